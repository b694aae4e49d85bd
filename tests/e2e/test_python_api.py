"""pyovms inside this test process (docs/python_api.md): `pyovms.serve` with no network, inference on a model, a
pipeline and a graph (sync and async), the errors and statistics of the wire, the same server exposed on gRPC and
REST while it runs, start-up failures, and 20 starts and stops with no growth in threads or open files."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import pyovms

from ..support import graph_repository, models
from ..support.server_process import free_port

X = np.arange(10, dtype=np.float32).reshape(1, 10)
NEGATE = """
import numpy as np

def get_inputs_info(params, state):
    return {"x": ("FP32", [1, 10])}

def get_outputs_info(params, state):
    return {"y": ("FP32", [1, 10])}

def execute(inputs, params, state):
    return {"y": -inputs["x"]}
"""


def build(root: Path) -> Path:
    """dummy (b -> a = b + 1), the pipeline `chain` (dummy, then a Python custom node negating it) and the graph
    `double_then_dummy` (a Python node doubling x, then dummy); the config.json path."""
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    (root / "negate.py").write_text(NEGATE)
    graph = root / "double_then_dummy"
    graph.mkdir()
    (graph / "graph.pbtxt").write_text(graph_repository.GRAPHS["double_then_dummy"])
    (graph / "double.py").write_text(graph_repository.HANDLERS["double.py"])
    node = {"name": "negate", "type": "custom", "library_name": "negate", "inputs": [{"x": {"node_name": "model",
            "data_item": "a"}}], "outputs": [{"data_item": "y", "alias": "y"}]}  # fmt: skip
    model = {"name": "model", "model_name": "dummy", "type": "DL model",
             "inputs": [{"b": {"node_name": "request", "data_item": "in"}}], "outputs": [{"data_item": "a", "alias": "a"}]}  # fmt: skip
    config = {
        "model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}},
                              {"config": {"name": "double_then_dummy", "base_path": "double_then_dummy"}}],
        "custom_node_library_config_list": [{"name": "negate", "base_path": "negate.py"}],
        "pipeline_config_list": [{"name": "chain", "inputs": ["in"], "nodes": [model, node],
                                  "outputs": [{"out": {"node_name": "negate", "data_item": "y"}}]}],
    }  # fmt: skip
    path = root / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("python_api"))


@pytest.fixture(scope="module")
def server(config_path):
    with pyovms.serve(config_path) as server:
        yield server


def test_a_model_a_pipeline_and_a_graph(server):
    assert server.ready() and server.live()
    np.testing.assert_array_equal(server.infer("dummy", {"b": X})["a"], X + 1)
    np.testing.assert_array_equal(server.infer("chain", {"in": X})["out"], -(X + 1))
    np.testing.assert_array_equal(server.infer("double_then_dummy", {"x": X})["y"], 2 * X + 1)
    outputs = server.infer("dummy", {"b": X[:, ::-1][:, ::-1]}, version=1, request_id="r1")  # a view: one copy
    assert list(outputs) == ["a"] and outputs["a"].dtype == np.float32 and not outputs["a"].flags.writeable


def test_metadata_readiness_and_statistics_are_those_of_the_wire(server):
    metadata = server.model_metadata("dummy")
    assert (metadata.name, metadata.versions, metadata.platform) == ("dummy", ["1"], "OpenVINO")
    assert [(s.name, s.datatype, s.metadata_shape) for s in metadata.inputs] == [("b", "FP32", [1, 10])]
    assert server.model_ready("dummy") and server.model_ready("chain", "1")
    assert "model_repository" not in server.metadata().extensions  # as wire clients see it (no --allow_model_control)
    before = server.statistics("dummy", "1")[0].statistics.success.count
    for _ in range(5):
        server.infer("dummy", {"b": X})
    with pytest.raises(pyovms.ServingError):
        server.infer("dummy", {"b": X[:, :5]})
    stats = server.statistics("dummy", "1")[0].statistics
    assert stats.success.count == before + 5 and stats.fail.count >= 1


@pytest.mark.parametrize(
    ("name", "inputs", "status", "message"),
    [
        ("nope", {"b": X}, "MODEL_NAME_MISSING", "Model with requested name is not found - name: nope"),
        ("dummy", {"b": X[:, :5]}, "INVALID_SHAPE", "Invalid input shape - Expected: (1,10); Actual: (1,5); input name: b"),
        ("dummy", {"b": X.astype(np.int32)}, "INVALID_PRECISION", "Invalid input precision - Expected: FP32; Actual: INT32; input name: b"),
        ("dummy", {"c": X}, "INVALID_MISSING_INPUT", "Missing input with specific name - Required input: b"),
        ("dummy", {"b": X.astype(np.complex64)}, "INVALID_PRECISION", "Invalid input precision - no KServe datatype for numpy dtype complex64; input name: b"),
    ],
)  # fmt: skip
def test_errors_are_serving_errors_with_the_ovms_status(server, name, inputs, status, message):
    with pytest.raises(pyovms.ServingError) as info:
        server.infer(name, inputs)
    assert (info.value.status.name, str(info.value)) == (status, message)
    np.testing.assert_array_equal(server.infer("dummy", {"b": X})["a"], X + 1)  # and the next one is served


def test_infer_async_from_another_event_loop(server):
    async def main() -> list[dict[str, np.ndarray]]:
        return await asyncio.gather(*(server.infer_async("dummy", {"b": X * i}) for i in range(50)))

    results = asyncio.run(main())
    for i, outputs in enumerate(results):
        np.testing.assert_array_equal(outputs["a"], X * i + 1)


def test_infer_from_many_threads_at_once(server):
    barrier = threading.Barrier(8)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        barrier.wait(60)
        for _ in range(20):
            results[i] = server.infer("chain", {"in": X * i})["out"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for i in range(8):
        np.testing.assert_array_equal(results[i], -(X * i + 1))


def test_the_same_server_on_the_wire_while_it_runs(config_path):
    grpc_port, rest_port = free_port(), free_port()
    with pyovms.serve(config_path, grpc_port=grpc_port, rest_port=rest_port) as server:
        assert server.grpc_address == f"127.0.0.1:{grpc_port}" and server.rest_address == f"127.0.0.1:{rest_port}"
        server.infer("dummy", {"b": X})
        grpc = grpcclient.InferenceServerClient(server.grpc_address)
        http = httpclient.InferenceServerClient(server.rest_address)
        for client, module in ((grpc, grpcclient), (http, httpclient)):
            b = module.InferInput("b", [1, 10], "FP32")
            b.set_data_from_numpy(X)
            np.testing.assert_array_equal(client.infer("dummy", [b]).as_numpy("a"), X + 1)
        grpc.close()
        http.close()
        assert server.statistics("dummy", "1")[0].statistics.success.count == 3  # one core, three front ends
    with pytest.raises(ConnectionRefusedError):  # and the port is closed once it stops
        socket.create_connection(("127.0.0.1", grpc_port), timeout=5)


def test_startup_failures_raise_and_leave_nothing_running(config_path, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    (tmp_path / "bad.json").write_text("{")
    counts = []
    try:
        for _ in range(3):  # (grpc.aio starts one poller thread per process, the first time it is used)
            with pytest.raises(pyovms.StartupError, match=r"Failed to start gRPC server: cannot bind gRPC server"):
                pyovms.serve(config_path, grpc_port=taken.getsockname()[1])
            with pytest.raises(pyovms.StartupError, match=r"Couldn't start model manager: The file is not valid json"):
                pyovms.serve(tmp_path / "bad.json")
            counts.append((threading.active_count(), _open_files()))
    finally:
        taken.close()
    assert counts[2] <= counts[0], counts


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({}, "exactly one of config_path, model_name with model_path, or demo=True"),
        ({"model_name": "m"}, "model_name and model_path go together"),
        ({"demo": True, "nireq": 2}, "model options go with model_name and model_path"),
        ({"demo": True, "no_such_option": 1}, "unexpected keyword arguments: no_such_option"),
    ],
)
def test_arguments_that_do_not_fit_are_refused(arguments, error):
    with pytest.raises((ValueError, TypeError), match=re.escape(error)):
        pyovms.serve(**arguments)


def test_one_model_with_its_options(tmp_path):
    models.build_dummy(tmp_path / "m" / "1" / "model.xml")
    models.build_dummy(tmp_path / "m" / "2" / "model.xml")
    with pyovms.serve(model_name="m", model_path=tmp_path / "m", nireq=2, batch_size="2",
                      model_version_policy={"all": {}}) as server:  # fmt: skip
        assert server.model_metadata("m").versions == ["1", "2"]
        outputs = server.infer("m", {"b": np.concatenate([X, X + 1])}, version=2)
        np.testing.assert_array_equal(outputs["a"], np.concatenate([X, X + 1]) + 1)


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_twenty_starts_and_stops_leave_no_threads_or_files_behind(config_path):
    def once() -> None:
        with pyovms.serve(config_path, grpc_port=free_port(), rest_port=free_port()) as server:
            np.testing.assert_array_equal(server.infer("chain", {"in": X})["out"], -(X + 1))
            np.testing.assert_array_equal(server.infer("double_then_dummy", {"x": X})["y"], 2 * X + 1)
        assert not server.running

    once()  # the first start creates what lives for the process (OpenVINO's and the user-code pools' threads)
    threads, files = {t.name for t in threading.enumerate()}, _open_files()
    thread_count = threading.active_count()
    for _ in range(20):
        once()
    assert threading.active_count() <= thread_count, sorted({t.name for t in threading.enumerate()} - threads)
    assert _open_files() <= files


def test_the_notebook_example_runs_as_written(tmp_path, monkeypatch):
    """docs/python_api.md's first example, executed as it is written there (the demo models are built locally)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    docs = (Path(__file__).resolve().parents[2] / "docs" / "python_api.md").read_text()
    example = docs[docs.index("```python") + len("```python") : docs.index("```", docs.index("```python") + 9)]
    assert len(example.strip().splitlines()) <= 10
    namespace: dict = {}
    exec(compile(example, "python_api.md", "exec"), namespace)  # the documented example itself
    np.testing.assert_array_equal(namespace["result"]["a"], np.arange(10, dtype=np.float32).reshape(1, 10) + 1)
    assert not namespace["server"].running


def test_repository_control_in_process(config_path):
    with pyovms.serve(config_path) as server:
        index = {(e.name, e.version): e.state for e in server.repository_index()}
        assert index == {("chain", "1"): "READY", ("double_then_dummy", "1"): "READY", ("dummy", "1"): "READY"}
        server.unload_model("dummy", unload_dependents=True)
        assert [e.name for e in server.repository_index(ready=True)] == ["double_then_dummy"]
        with pytest.raises(pyovms.ServingError) as info:
            server.infer("chain", {"in": X})
        assert str(info.value) == "Pipeline is retired - name: chain"
        server.load_model("dummy", config={"base_path": "dummy", "nireq": 3})
        server.load_model("chain")
        np.testing.assert_array_equal(server.infer("chain", {"in": X})["out"], -(X + 1))
        with pytest.raises(pyovms.ServingError) as info:
            server.load_model("ghost")
        assert info.value.status.name == "MODEL_NAME_MISSING"


def test_requests_are_views_of_the_callers_arrays_empty_ones_too():
    """Numeric inputs are passed as the caller's memory (a contiguous array is not copied); empty and 0-d arrays
    become raw buffers of their size (memoryview.cast refuses shapes with a zero)."""
    from pyovms.in_process import build_request

    values = np.arange(10, dtype=np.float32).reshape(1, 10)
    request = build_request("m", {"x": values, "empty": np.zeros((0, 3), np.int32), "scalar": np.float64(2.5)})
    raw = {tensor.name: tensor.raw for tensor in request.inputs}
    assert np.frombuffer(raw["x"], np.float32).ctypes.data == values.ctypes.data
    assert len(raw["empty"]) == 0 and request.inputs[1].shape == (0, 3)
    assert np.frombuffer(raw["scalar"], np.float64).tolist() == [2.5] and request.inputs[2].shape == ()
