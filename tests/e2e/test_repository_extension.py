"""The model repository extension (docs/model_repository.md) through tritonclient's gRPC and HTTP clients against a
real server: the index, a load of a model dropped into the repository, a reload with a changed config, unloads that
wait for the requests in flight (0 failed requests), unknown names and bad parameters, concurrent loads and unloads
of one model, unload_dependents, and how explicit loads and unloads coexist with config.json."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from ..support import graph_repository, models, python_libraries
from ..support.server_process import ServerProcess, wait_for

X = np.arange(10, dtype=np.float32).reshape(1, 10)


def _pipeline(name: str, node: dict, output: str) -> dict:
    return {"name": name, "inputs": ["in"], "nodes": [node], "outputs": [{"out": {"node_name": node["name"],
            "data_item": output}}]}  # fmt: skip


def build(root: Path) -> Path:
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    for version in (1, 2):
        models.build_add_constant(root / "versioned" / str(version) / "model.xml", [1, 10], float(version))
    models.build_slow_to_infer(root / "slow" / "1" / "model.xml", layers=12, width=1024)
    models.write_broken(root / "broken" / "1")
    (root / "upper").mkdir()
    (root / "upper" / "graph.pbtxt").write_text(graph_repository.GRAPHS["upper"])
    (root / "upper" / "upper.py").write_text(graph_repository.HANDLERS["upper.py"])
    (root / "blocking.py").write_text(python_libraries.BLOCKING)
    blocking = {"name": "node", "type": "custom", "library_name": "blocking",
                "params": {"started": str(root / "started"), "release": str(root / "release")},
                "inputs": [{"x": {"node_name": "request", "data_item": "in"}}], "outputs": [{"data_item": "y", "alias": "y"}]}  # fmt: skip
    model_node = {"name": "node", "model_name": "dummy", "type": "DL model",
                  "inputs": [{"b": {"node_name": "request", "data_item": "in"}}], "outputs": [{"data_item": "a", "alias": "a"}]}  # fmt: skip
    config = {
        "model_config_list": [{"config": {"name": n, "base_path": n, **({"nireq": 1} if n == "slow" else {})}}
                              for n in ("dummy", "versioned", "slow", "broken", "upper")]
                             + [{"config": {"name": "missing", "base_path": "no_such_directory"}}],
        "custom_node_library_config_list": [{"name": "blocking", "base_path": "blocking.py"}],
        "pipeline_config_list": [_pipeline("blocking", blocking, "y"), _pipeline("dummy_chain", model_node, "a")],
    }  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


@pytest.fixture
def server(tmp_path):
    build(tmp_path)
    server = ServerProcess(
        ["--config_path", str(tmp_path / "config.json"), "--metrics_enable", "--allow_model_control"], tmp_path / "log"
    )
    yield server
    server.stop()


@pytest.fixture
def clients(server):
    grpc_client = grpcclient.InferenceServerClient(server.address)
    http_client = httpclient.InferenceServerClient(server.rest_address, network_timeout=120)
    yield grpc_client, http_client
    grpc_client.close()
    http_client.close()


def _infer(client, module, name: str, values: np.ndarray = X, input_name: str = "b") -> np.ndarray:
    tensor = module.InferInput(input_name, list(values.shape), "FP32")
    tensor.set_data_from_numpy(values)
    result = client.infer(name, [tensor])
    return result.as_numpy(result.get_response(as_json=True)["outputs"][0]["name"] if module is grpcclient else
                           result.get_response()["outputs"][0]["name"])  # fmt: skip


def _index(client) -> list[dict]:
    if isinstance(client, grpcclient.InferenceServerClient):
        return client.get_model_repository_index(as_json=True).get("models", [])
    return client.get_model_repository_index()


def _ready(client, name: str) -> bool:
    """ModelReady; a name with no version left answers NOT_FOUND, as OVMS does."""
    try:
        return client.is_model_ready(name)
    except InferenceServerException as exc:
        assert exc.status() == "StatusCode.NOT_FOUND" and "no version is available" in exc.message(), exc
        return False


def _states(client) -> dict[tuple[str, str], str]:
    return {(e["name"], e.get("version", "")): e.get("state", "") for e in _index(client)}


def test_the_index_lists_every_model_pipeline_and_graph_with_its_state(server, clients, tmp_path):
    models.build_dummy(tmp_path / "newcomer" / "1" / "model.xml")  # in the repository, configured nowhere
    for client in clients:
        index = {(e["name"], e.get("version", "")): e for e in _index(client)}
        assert [key for key in index] == sorted(index, key=lambda k: (k[0], int(k[1] or -1)))
        assert {key: e.get("state", "") for key, e in index.items()} == {
            ("blocking", "1"): "READY", ("broken", "1"): "UNAVAILABLE", ("dummy", "1"): "READY", ("missing", ""): "UNAVAILABLE",
            ("dummy_chain", "1"): "READY", ("newcomer", ""): "", ("slow", "1"): "READY", ("upper", "1"): "READY",
            ("versioned", "2"): "READY",
        }  # fmt: skip
        assert index[("broken", "1")]["reason"].startswith("Error while loading a network"), index[("broken", "1")]
        assert index[("missing", "")]["reason"].startswith("The provided base path is invalid or doesn't exists - ")
        assert "version" not in index[("newcomer", "")] or index[("newcomer", "")]["version"] == ""
    stub = service_pb2_grpc_stub(server.channel)
    ready_grpc = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True), timeout=30).models
    ready_http = _ready_index_http(server)
    expected = {key for key, state in _states(clients[0]).items() if state == "READY"}
    assert {(e.name, e.version) for e in ready_grpc} == expected == {(e["name"], e["version"]) for e in ready_http}
    grpc_client, http_client = clients
    assert {"model_repository", "model_repository(unload_dependents)"} <= set(
        grpc_client.get_server_metadata(as_json=True)["extensions"]
    ) & set(http_client.get_server_metadata()["extensions"])


def _ready_index_http(server) -> list[dict]:
    """POST /v2/repository/index {"ready": true} (tritonclient's HTTP index sends no body)."""
    import urllib.request

    request = urllib.request.Request(f"http://{server.rest_address}/v2/repository/index", data=b'{"ready": true}',
                                     method="POST")  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_model_dropped_into_the_repository_loads_and_unloads(server, clients, tmp_path):
    grpc_client, http_client = clients
    models.build_add_constant(tmp_path / "newcomer" / "1" / "model.xml", [1, 10], 7.0)
    grpc_client.load_model("newcomer")
    assert _states(http_client)[("newcomer", "1")] == "READY"
    np.testing.assert_array_equal(_infer(http_client, httpclient, "newcomer", input_name="x"), X + 7)
    http_client.unload_model("newcomer")
    assert _states(grpc_client)[("newcomer", "1")] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException) as info:
        _infer(grpc_client, grpcclient, "newcomer", input_name="x")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "Model with requested version is not found - name: newcomer" in info.value.message()
    models.build_add_constant(tmp_path / "graphs_too" / "1" / "model.xml", [1, 10], 1.0)
    (tmp_path / "graphs_too" / "1").rename(tmp_path / "graphs_too" / "kept")  # a graph directory, not versions
    (tmp_path / "graphs_too" / "graph.pbtxt").write_text(graph_repository.GRAPHS["upper"])
    (tmp_path / "graphs_too" / "upper.py").write_text(graph_repository.HANDLERS["upper.py"])
    http_client.load_model("graphs_too")
    text = grpcclient.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=np.object_))
    assert grpc_client.infer("graphs_too", [text]).as_numpy("result").tolist() == [b"HI"]


def test_a_reload_with_a_changed_config_and_the_pins_until_config_json_changes(server, clients, tmp_path):
    grpc_client, http_client = clients
    np.testing.assert_array_equal(_infer(grpc_client, grpcclient, "versioned", input_name="x"), X + 2)
    override = {"base_path": "versioned", "model_version_policy": {"specific": {"versions": [1]}}}
    http_client.load_model("versioned", config=json.dumps(override))
    np.testing.assert_array_equal(_infer(grpc_client, grpcclient, "versioned", input_name="x"), X + 1)
    assert _states(grpc_client)[("versioned", "1")] == "READY"
    grpc_client.unload_model("dummy")
    assert server.reload_config() in (200, 201)  # config.json unchanged: the pins hold
    assert not _ready(grpc_client, "dummy")
    np.testing.assert_array_equal(_infer(grpc_client, grpcclient, "versioned", input_name="x"), X + 1)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_config_list"][0]["config"]["nireq"] = 2  # config.json changes: it alone applies again
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert server.reload_config() == 201
    assert grpc_client.is_model_ready("dummy")
    np.testing.assert_array_equal(_infer(grpc_client, grpcclient, "versioned", input_name="x"), X + 2)
    assert "Explicit loads and unloads of dummy, versioned no longer apply" in server.log()


def test_an_unload_answers_once_the_requests_in_flight_have_finished(server, clients, tmp_path):
    """A pipeline request held inside its custom node: the unload waits for it, then the request succeeds."""
    grpc_client, _ = clients
    channel = grpc.insecure_channel(server.address)
    stub = service_pb2_grpc_stub(channel)
    request = service_pb2.ModelInferRequest(model_name="blocking")
    request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(X.tobytes())
    in_flight = stub.ModelInfer.future(request, timeout=120)
    wait_for(lambda: (tmp_path / "started").exists(), timeout=60)
    unloaded = threading.Event()

    def unload() -> None:
        grpc_client.unload_model("blocking")
        unloaded.set()

    worker = threading.Thread(target=unload)
    worker.start()
    wait_for(lambda: "Unload of blocking waits for 1 request(s) in flight" in server.log(), timeout=60)
    assert not unloaded.is_set()  # the request is held in its node: the unload cannot have answered
    (tmp_path / "release").touch()
    reply = in_flight.result(timeout=60)
    np.testing.assert_array_equal(np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(1, 10), X)
    worker.join(60)
    assert unloaded.is_set()
    assert _states(grpc_client)[("blocking", "1")] == "UNAVAILABLE"
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def service_pb2_grpc_stub(channel):
    from tritonclient.grpc import service_pb2_grpc

    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _in_flight(server, name: str) -> float:
    """ovms_current_requests of one model, from /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://{server.rest_address}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines
               if line.startswith("ovms_current_requests{") and f'name="{name}"' in line)  # fmt: skip


def test_unload_under_load_fails_no_request(server, clients):
    """Requests keep flowing to dummy while slow, with requests in flight, is unloaded: none of them fails."""
    grpc_client, _ = clients
    rows = np.random.default_rng(0).random((256, 1024), dtype=np.float32)
    stop = threading.Event()
    failures: list[str] = []
    served = [0]

    def load() -> None:
        client = grpcclient.InferenceServerClient(server.address)
        while not stop.is_set():
            try:
                np.testing.assert_array_equal(_infer(client, grpcclient, "dummy"), X + 1)
                served[0] += 1
            except Exception as exc:  # every failure is collected and asserted on
                failures.append(repr(exc))
        client.close()

    def slow(_: int) -> np.ndarray:
        client = grpcclient.InferenceServerClient(server.address)
        try:
            return _infer(client, grpcclient, "slow", rows, input_name="x")
        finally:
            client.close()

    with ThreadPoolExecutor(10) as pool:
        background = [pool.submit(load) for _ in range(2)]
        try:
            slow_requests = [pool.submit(slow, i) for i in range(8)]
            # Every slow request has reached the server (running, queued for its one infer request, or answered):
            wait_for(lambda: _in_flight(server, "slow") + sum(f.done() for f in slow_requests) == 8, timeout=60)
            grpc_client.unload_model("slow")
            results = [future.result(timeout=120) for future in slow_requests]  # every one answered, none failed
        finally:
            stop.set()
        for future in background:
            future.result(timeout=60)
    assert failures == [] and served[0] > 0
    assert all(result.shape == (256, 1024) for result in results)
    assert not _ready(grpc_client, "slow")


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_unknown_names_and_bad_parameters(server, clients, kind):
    client = clients[0] if kind == "grpc" else clients[1]
    cases = [
        (lambda: client.load_model("ghost"), "StatusCode.NOT_FOUND", "404",
         "Model with requested name is not found - name: ghost; no such directory in the model repository"),
        (lambda: client.unload_model("ghost"), "StatusCode.NOT_FOUND", "404",
         "Model with requested name is not found - name: ghost"),
        (lambda: client.load_model("dummy", config="{not json"), "StatusCode.INVALID_ARGUMENT", "400",
         "Invalid model repository request - config is not JSON: "),
        (lambda: client.load_model("dummy", config='{"name": "other", "base_path": "dummy"}'),
         "StatusCode.INVALID_ARGUMENT", "400", "Invalid model repository request - config names other, not dummy"),
        (lambda: client.load_model("dummy", config='{"base_path": "dummy", "nireq": "two"}'),
         "StatusCode.INVALID_ARGUMENT", "400", "Invalid model repository request - config: JSON schema parse error"),
        (lambda: client.load_model("dummy_chain", config='{"base_path": "dummy"}'), "StatusCode.INVALID_ARGUMENT",
         "400", "Invalid model repository request - name: dummy_chain is a pipeline; config overrides models only"),
        (lambda: client.load_model("dummy", files={"file:1/model.xml": b"<xml/>"}), "StatusCode.INVALID_ARGUMENT",
         "400", "Invalid model repository request - load parameters file:1/model.xml are not served"),
        (lambda: client.load_model("broken"), "StatusCode.FAILED_PRECONDITION", "412",
         "Model could not be loaded - name: broken; "),
    ]  # fmt: skip
    for call, grpc_code, http_code, message in cases:
        with pytest.raises(InferenceServerException) as info:
            call()
        assert info.value.status() == (grpc_code if kind == "grpc" else http_code), info.value
        assert info.value.message().startswith(message) or message in info.value.message(), info.value.message()
    np.testing.assert_array_equal(_infer(clients[0], grpcclient, "dummy"), X + 1)  # still serving


def test_concurrent_loads_and_unloads_of_one_model(server, clients):
    grpc_client, http_client = clients
    barrier = threading.Barrier(10)
    errors: list[str] = []

    def operate(i: int) -> None:
        client = grpcclient.InferenceServerClient(server.address) if i % 2 else httpclient.InferenceServerClient(
            server.rest_address, network_timeout=120)  # fmt: skip
        barrier.wait(60)
        try:
            (client.load_model if i % 3 else client.unload_model)("dummy")
        except InferenceServerException as exc:
            errors.append(str(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=operate, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []  # each one applied in turn, none refused
    grpc_client.load_model("dummy")  # the last word
    np.testing.assert_array_equal(_infer(http_client, httpclient, "dummy"), X + 1)
    assert _states(grpc_client)[("dummy", "1")] == "READY"


def test_unload_dependents_also_unloads_the_pipelines_running_the_model(server, clients):
    grpc_client, http_client = clients
    http_client.unload_model("dummy", unload_dependents=True)
    states = _states(grpc_client)
    assert states[("dummy", "1")] == "UNAVAILABLE" and states[("dummy_chain", "1")] == "UNAVAILABLE"
    assert states[("blocking", "1")] == "READY"  # a pipeline that does not run it
    grpc_client.load_model("dummy")
    grpc_client.load_model("dummy_chain")
    np.testing.assert_array_equal(_infer(http_client, httpclient, "dummy_chain", input_name="in"), X + 1)
