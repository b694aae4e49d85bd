"""C and C++ custom node libraries (OVMS's C ABI) in pipelines, next to models: values and shapes over gRPC and
REST, demultiplexing and gathering with C nodes (static, dynamic, nested), OVMS's statuses for every way a library
misbehaves, libraries that do not load, parallel execution, and buffers: every one the libraries hand out comes
back exactly once, and thousands of requests keep the server's memory flat. The libraries are compiled from
tests/support/c_sources/ with the system compiler."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.c_libraries import build_all
from ..support.server_process import ServerProcess, serve_config
from .test_pipelines import _custom, _node, _pipeline

X = np.arange(10, dtype=np.float32).reshape(1, 10)
NOT_LOADED = "Pipeline is not loaded yet - name: "


def _c(name: str, library: str, inputs: dict[str, tuple[str, str]], outputs: dict[str, str], **extra) -> dict:
    """A custom node; `params` and the node's other keys (demultiply_count, gather_from_node) from `extra`."""
    params = extra.pop("params", {})
    return {**_custom(name, library, inputs, outputs, **params), **extra}


def _one_node(name: str, library: str, params: dict, inputs=("in",), outputs=("out",)) -> dict:
    """A pipeline of one custom node: request `in` -> node input `inputs[0]` -> node output -> response `out`."""
    node = _c("f", library, {inputs[0]: ("request", "in")}, {outputs[0]: "result"}, params=params)
    return _pipeline(name, ["in"], [node], {"out": ("f", "result")})


FAULTS = {
    "execute_error": ("Custom node failed during execution - Node: f; library faulty returned 42"),
    "null_outputs": "Custom node library has returned corrupted outputs handle - Node: f; library faulty",
    "zero_count": "Custom node library has produced corrupted number of outputs - Node: f; library faulty: 0 outputs",
    "bad_precision": "Custom node has produced tensor with unspecified precision - Node: f; output out has precision 0",
    "bad_size": "Custom node output has invalid content size - Node: f; output out: expected: 40 bytes vs 44",
    "no_dims": "Custom node has produced tensor with not matching shape - Node: f; output out: shape handle is null",
    "no_name": "Custom node output is missing name - Node: f; library faulty",
    "missing_output": "Custom node output is missing - Node: f; out; returned: address, other",
    "bad_second": "Custom node has produced tensor with unspecified precision - Node: f; output address has precision 0",
    "wrong_precision": "Custom node output is invalid - Node: f; output out has datatype INT32; declared: FP32",
}
UNAVAILABLE = {
    "fault_init_error": "Failure during custom node library initialization - node f library faulty: initialize returned 3",
    "fault_metadata_error": "Custom node failed on metadata call - node f library faulty: getInputsInfo returned 5",
    "fault_metadata_unspecified": (
        "Custom node has produced tensor with unspecified precision - node f library faulty: getInputsInfo: in has "
        "precision 0"
    ),
    "missing_symbol": "Custom node library failed to load symbol - node f: missing_symbol: release",
    "not_a_library": "Custom node library failed to open - node f: not_a_library: ",
    "gather_not_lifo": (
        "Demultiplexer and gather nodes are not in LIFO order - node max_inner gathers from outer; the innermost is inner"
    ),
}  # fmt: skip


def _nested(name: str, gather_inner: bool = True) -> dict:
    """Two levels: `outer` makes 2 branches (x + i), `inner` 3 inside each (x + i + j), dummy adds 1; gathered
    by gather_max at both levels (inner first), and the model's output gathered at the response."""
    inner_gather = _c("max_inner", "gather_max", {"in": ("model", "plus")}, {"max": "best"},
                      gather_from_node="inner" if gather_inner else "outer")  # fmt: skip
    return _pipeline(
        name,
        ["in"],
        [
            _c("outer", "demultiplexer", {"in": ("request", "in")}, {"tiles": "t"}, params={"count": "2"},
               demultiply_count=2),
            _c("inner", "demultiplexer", {"in": ("outer", "t")}, {"tiles": "t"}, params={"count": "3"},
               demultiply_count=3),
            _node("model", "dummy", {"b": ("inner", "t")}, {"a": "plus"}),
            inner_gather,
            _c("max_outer", "gather_max", {"in": ("max_inner", "best")}, {"max": "best"}, gather_from_node="outer"),
        ],
        {"best": ("max_outer", "best"), "per_outer": ("max_inner", "best"), "all": ("model", "plus")},
    )  # fmt: skip


def _library_list(libraries: dict[str, Path], root: Path) -> list[dict]:
    (root / "libnot_a_library.so").write_text("this is not a shared library\n")
    entries = [{"name": name, "base_path": str(path)} for name, path in libraries.items()]
    return [*entries, {"name": "not_a_library", "base_path": "libnot_a_library.so"}]  # relative to config.json


@pytest.fixture(scope="module")
def libraries(tmp_path_factory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("c_libraries"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, libraries):
    root = tmp_path_factory.mktemp("c_nodes")
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    pipelines = [
        _one_node("add_sub", "add_sub", {"add": "5", "sub": "2"}, ("input_numbers",), ("output_numbers",)),
        _pipeline("chain", ["in"], [
            _node("model", "dummy", {"b": ("request", "in")}, {"a": "plus"}),
            _c("add_sub", "add_sub", {"input_numbers": ("model", "plus")}, {"output_numbers": "sum"},
               params={"add": "3"}),
            _c("scale", "scale", {"in": ("add_sub", "sum")}, {"out": "scaled"}, params={"factor": "0.5"}),
        ], {"out": ("scale", "scaled"), "sum": ("add_sub", "sum")}),
        _pipeline("static_demux", ["in"], [
            _c("tile", "demultiplexer", {"in": ("request", "in")}, {"tiles": "t"}, params={"count": "3"},
               demultiply_count=3),
            _c("add_sub", "add_sub", {"input_numbers": ("tile", "t")}, {"output_numbers": "sum"},
               params={"add": "10"}),
        ], {"out": ("add_sub", "sum")}),
        _pipeline("dynamic_demux", ["in"], [
            _c("tile", "demultiplexer", {"in": ("request", "in")}, {"tiles": "t"}, params={"count": "input"},
               demultiply_count=0),
            _node("model", "dummy", {"b": ("tile", "t")}, {"a": "plus"}),
            _c("max", "gather_max", {"in": ("model", "plus")}, {"max": "best"}, gather_from_node="tile"),
        ], {"out": ("max", "best"), "all": ("model", "plus")}),
        _nested("nested"),
        _nested("gather_not_lifo", gather_inner=False),
        *[_one_node(f"fault_{mode}", "faulty", {"mode": mode}) for mode in
          (*FAULTS, "init_error", "metadata_error", "metadata_unspecified")],
        _one_node("rendezvous", "faulty", {"mode": "rendezvous", "parties": "3"}),
        _one_node("missing_symbol", "missing_symbol", {}),
        _one_node("not_a_library", "not_a_library", {}),
        _pipeline("leak", ["in"], [
            _c("add_sub", "add_sub", {"input_numbers": ("request", "in")},
               {"output_numbers": "sum", "counters": "counters"}, params={"add": "1", "dims": "1,16384"}),
        ], {"out": ("add_sub", "sum"), "counters": ("add_sub", "counters")}),
    ]  # fmt: skip
    config = {
        "custom_node_library_config_list": _library_list(libraries, root),
        "model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}],
        "pipeline_config_list": pipelines,
    }
    process = serve_config(root, config)
    yield process
    process.stop()


def _infer(client, pipeline: str, values: np.ndarray, outputs: tuple[str, ...] = ("out",)) -> dict[str, np.ndarray]:
    tensor = grpcclient.InferInput("in", list(values.shape), "FP32")
    tensor.set_data_from_numpy(values)
    result = client.infer(pipeline, [tensor])
    return {name: result.as_numpy(name) for name in outputs}


def _raw_request(pipeline: str, values: np.ndarray) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=pipeline)
    request.inputs.add(name="in", datatype="FP32", shape=list(values.shape))
    request.raw_input_contents.append(values.tobytes())
    return request


def test_c_node_values_over_grpc_and_rest(server, client):
    np.testing.assert_array_equal(_infer(client, "add_sub", X)["out"], X + 3)
    rest = httpclient.InferenceServerClient(server.rest_address)
    tensor = httpclient.InferInput("in", [1, 10], "FP32")
    tensor.set_data_from_numpy(X * 2)
    np.testing.assert_array_equal(rest.infer("add_sub", [tensor]).as_numpy("out"), X * 2 + 3)
    rest.close()


def test_model_c_and_cpp_nodes_in_one_pipeline(client):
    got = _infer(client, "chain", X, ("out", "sum"))
    np.testing.assert_array_equal(got["sum"], X + 1 + 3)
    np.testing.assert_array_equal(got["out"], (X + 1 + 3) * 0.5)


def test_metadata_from_the_libraries_info(client):
    metadata = client.get_model_metadata("add_sub")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("in", "FP32", [1, -1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("out", "FP32", [1, -1])]
    nested = client.get_model_metadata("nested")
    shapes = {t.name: list(t.shape) for t in nested.outputs}
    assert shapes == {"all": [2, 3, 1, 10], "per_outer": [2, 1, -1], "best": [1, -1]}
    assert client.is_model_ready("nested")


def test_static_demultiplexer_with_c_nodes(client):
    got = _infer(client, "static_demux", X)["out"]
    assert got.shape == (3, 1, 10)
    np.testing.assert_array_equal(got, np.stack([X + i + 10 for i in range(3)]))


def test_dynamic_demultiplexer_gathered_by_a_c_node(client):
    values = X.copy()
    values[0, 0] = 4  # four branches: x + i, then + 1 by dummy
    got = _infer(client, "dynamic_demux", values, ("out", "all"))
    np.testing.assert_array_equal(got["all"], np.stack([values + i + 1 for i in range(4)]))
    np.testing.assert_array_equal(got["out"], values + 3 + 1)


def test_dynamic_demultiplexer_with_no_branch_aborts(server, client):
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(_raw_request("dynamic_demux", np.zeros((1, 10), np.float32)), timeout=30)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert info.value.details() == "Pipeline execution aborted due to no content from custom node - Node: tile"
    np.testing.assert_array_equal(_infer(client, "add_sub", X)["out"], X + 3)


def test_nested_demultiplexing_gathered_at_both_levels(client):
    got = _infer(client, "nested", X, ("best", "per_outer", "all"))
    expected_all = np.stack([np.stack([X + i + j + 1 for j in range(3)]) for i in range(2)])
    np.testing.assert_array_equal(got["all"], expected_all)  # both levels gathered at the response
    np.testing.assert_array_equal(got["per_outer"], np.stack([X + i + 2 + 1 for i in range(2)]))
    np.testing.assert_array_equal(got["best"], X + 1 + 2 + 1)


@pytest.mark.parametrize("mode", list(FAULTS))
def test_misbehaving_library_answers_ovms_status_and_the_server_goes_on(server, client, mode):
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(_raw_request(f"fault_{mode}", X), timeout=30)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INTERNAL, FAULTS[mode])
    rest = httpclient.InferenceServerClient(server.rest_address)
    tensor = httpclient.InferInput("in", [1, 10], "FP32")
    tensor.set_data_from_numpy(X)
    with pytest.raises(Exception) as rest_info:
        rest.infer(f"fault_{mode}", [tensor])
    assert rest_info.value.status() == "500"
    assert FAULTS[mode] in rest_info.value.message()
    rest.close()
    np.testing.assert_array_equal(_infer(client, "add_sub", X)["out"], X + 3)


@pytest.mark.parametrize("pipeline", list(UNAVAILABLE))
def test_pipelines_of_libraries_that_fail_are_unavailable_with_the_reason(server, client, pipeline):
    assert not client.is_model_ready(pipeline)
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(_raw_request(pipeline, X), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details().startswith(f"{NOT_LOADED}{pipeline}; {UNAVAILABLE[pipeline]}")
    assert client.is_model_ready("add_sub")


def test_libraries_that_fail_to_load_are_logged_with_ovms_messages(server):
    log = server.log()
    assert re.search(r"Library name: not_a_library failed to open base_path: \S+libnot_a_library.so with error", log)
    assert "Failed to load library name: missing_symbol with error: " in log
    assert "undefined symbol: release" in log


def test_c_nodes_run_in_parallel(server):
    # Each call waits inside the library until three calls are inside at once: only parallel calls can succeed.
    parties = 3
    barrier = threading.Barrier(parties)
    answers: list[object] = [None] * parties

    def call(index: int) -> None:
        stub = server.stub
        barrier.wait(timeout=60)
        try:
            reply = stub.ModelInfer(_raw_request("rendezvous", X + index), timeout=90)
            answers[index] = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(1, 10)
        except grpc.RpcError as exc:
            answers[index] = exc.details()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for index, answer in enumerate(answers):
        assert isinstance(answer, np.ndarray), answer
        np.testing.assert_array_equal(answer, X + index)


def test_thousands_of_requests_give_every_buffer_back_and_keep_memory_flat(server):
    values = np.ones((1, 16384), np.float32)  # 64 KiB out per request: a lost buffer per request would show
    request = _raw_request("leak", values)

    def run(count: int) -> service_pb2.ModelInferResponse:
        for _ in range(count):
            reply = server.stub.ModelInfer(request, timeout=30)
        return reply

    reply = run(300)
    out = np.frombuffer(reply.raw_output_contents[1], np.float32)  # outputs sorted: counters, out
    np.testing.assert_array_equal(out, np.full(16384, 2, np.float32))
    before = server.rss_mb()
    reply = run(3000)
    growth = server.rss_mb() - before
    assert growth < 40, f"RSS grew by {growth:.1f} MB over 3000 requests of 64 KiB"
    # counters before the last call: buffers handed out and given back (all of them by then), none given back twice
    handed, released, bad = np.frombuffer(reply.raw_output_contents[0], np.int64)
    assert (handed - released, bad) == (0, 0), (handed, released, bad)
    assert handed >= 3300 * 5  # outputs array, two data buffers, two dims per call


def _report(path: Path) -> list[tuple[str, str, dict[str, int]]]:
    lines = []
    for line in path.read_text().splitlines():
        event, tag, *counts = line.split()
        lines.append((event, tag, {k: int(v) for k, v in (c.split("=") for c in counts)}))
    return lines


def test_every_buffer_comes_back_exactly_once_on_every_error_path(tmp_path, libraries):
    report = tmp_path / "report.txt"
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    pipelines = [
        _one_node(f"p_{mode}", "faulty", {"mode": mode, "report": str(report), "tag": mode})
        for mode in ("ok", *FAULTS, "metadata_unspecified")
    ]
    config = {
        "custom_node_library_config_list": [{"name": "faulty", "base_path": str(libraries["faulty"])}],
        "model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}],
        "pipeline_config_list": pipelines,
    }
    server = serve_config(tmp_path, config)
    try:
        for _ in range(5):
            for pipeline in pipelines:
                try:
                    server.stub.ModelInfer(_raw_request(pipeline["name"], X), timeout=30)
                except grpc.RpcError as exc:
                    assert exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE), exc.details()
    finally:
        assert server.stop() == 0
    lines = _report(report)
    initialized = sorted(tag for event, tag, _ in lines if event == "initialize")
    deinitialized = sorted(tag for event, tag, _ in lines if event == "deinitialize")
    assert initialized == deinitialized == sorted(("ok", *FAULTS, "metadata_unspecified"))
    for event, tag, counts in lines:
        if event == "deinitialize":
            assert counts["bad"] == 0 and counts["handed"] == counts["released"], (tag, counts)
            assert counts["executes"] == (0 if tag == "metadata_unspecified" else 5), (tag, counts)


def _write_config(root: Path, add: str, library: Path, report: Path, other: Path) -> None:
    """Pipeline `p` (add_sub adding `add`) and `other` (the C++ scale node, which no change touches)."""
    node = _c(
        "n",
        "add_sub",
        {"input_numbers": ("request", "in")},
        {"output_numbers": "sum"},
        params={"add": add, "report": str(report), "tag": f"add{add}"},
    )
    scale = _c("s", "scale", {"in": ("request", "in")}, {"out": "out"}, params={"report": str(report), "tag": "scale"})
    config = {
        "custom_node_library_config_list": [{"name": "add_sub", "base_path": str(library)},
                                            {"name": "scale", "base_path": str(other)}],
        "model_config_list": [],
        "pipeline_config_list": [_pipeline("p", ["in"], [node], {"out": ("n", "sum")}),
                                 _pipeline("other", ["in"], [scale], {"out": ("s", "out")})],
    }  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))


def test_changed_params_and_library_file_reload_the_node_under_load(tmp_path):
    """Params, then the library file, change under load: 0 failed requests, the new values served, each node
    initialized before the one it replaces is deinitialized, and a pipeline no change touches keeps its node."""
    from ..support.c_libraries import build_library

    report = tmp_path / "report.txt"
    library = build_library("add_sub", tmp_path / "lib")
    other = build_library("scale", tmp_path / "lib")
    _write_config(tmp_path, "1", library, report, other)
    server = ServerProcess(["--config_path", str(tmp_path / "config.json")], tmp_path / "log")
    seen: set[float] = set()
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        channel = grpc.insecure_channel(server.address)
        from tritonclient.grpc import service_pb2_grpc

        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        while not stop.is_set():
            try:
                reply = stub.ModelInfer(_raw_request("p", X), timeout=30)
                seen.add(float(np.frombuffer(reply.raw_output_contents[0], np.float32)[0]))
            except grpc.RpcError as exc:
                failures.append(exc.details())
        channel.close()

    threads = [threading.Thread(target=load) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        _wait_seen(seen, 1.0)
        _write_config(tmp_path, "10", library, report, other)  # changed params
        assert server.reload_config() == 201
        _wait_seen(seen, 10.0)
        rebuilt = build_library("add_sub", tmp_path / "new", "ADD_SUB_EXTRA=100")
        rebuilt.rename(library)  # a new file under the same path
        assert server.reload_config() == 201
        _wait_seen(seen, 110.0)
        broken = tmp_path / "new" / "broken.so"
        broken.write_text("not a library")
        broken.rename(library)  # a new file that does not load: the library loaded before keeps serving
        assert server.reload_config() == 200
        seen.clear()
        _wait_seen(seen, 110.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert server.stop() == 0
    assert failures == []
    events = [(event, tag) for event, tag, _ in _report(report)]
    assert sorted(events) == sorted([("initialize", "add1"), ("deinitialize", "add1"), *[("initialize", "add10"),
                                     ("deinitialize", "add10")] * 2, ("initialize", "scale"),
                                     ("deinitialize", "scale")])  # fmt: skip
    assert events[-1] == ("deinitialize", "scale") or events[-2] == ("deinitialize", "scale")  # at shutdown only
    # a node's replacement is initialized before it is deinitialized (requests in flight finish on the old one)
    assert events.index(("initialize", "add10")) < events.index(("deinitialize", "add1"))
    assert events.index(("initialize", "add10"), events.index(("initialize", "add10")) + 1) < events.index(
        ("deinitialize", "add10")
    )
    assert all(c["handed"] == c["released"] and c["bad"] == 0 for e, _, c in _report(report) if e == "deinitialize")
    log = (tmp_path / "log").read_text()
    assert "Custom node library add_sub reloaded from" in log
    assert log.count("Custom node library add_sub not loaded: Custom node library failed to open - add_sub: ") == 1


def _wait_seen(seen: set[float], value: float) -> None:
    from ..support.server_process import wait_for

    wait_for(lambda: value in seen, timeout=60)


def test_a_crash_in_a_library_ends_the_process_and_the_log_shows_where(tmp_path, libraries):
    config = {
        "custom_node_library_config_list": [{"name": "faulty", "base_path": str(libraries["faulty"])}],
        "model_config_list": [],
        "pipeline_config_list": [_one_node("crash", "faulty", {"mode": "crash"})],
    }
    server = serve_config(tmp_path, config)
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(_raw_request("crash", X), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.process.wait(60) == -11  # SIGSEGV
    log = server.log()
    assert "Fatal Python error: Segmentation fault" in log
    assert "custom_nodes/c_library.py" in log and "in _execute" in log
    server.stop()


def test_inputs_reach_the_library_without_a_copy(tmp_path, libraries):
    """In-process: the array a pipeline is given is the memory the library reads (a 600 KB tensor too)."""
    import asyncio

    from pyovms.control.model_manager import ModelManager
    from pyovms.custom_nodes.interface import LibraryConfig
    from pyovms.servables.pipelines.config import PipelineConfig

    pipeline = _pipeline("p", ["in"], [
        _c("f", "faulty", {"in": ("request", "in")}, {"address": "address", "out": "out"}),
    ], {"address": ("f", "address"), "out": ("f", "out")})  # fmt: skip

    async def run() -> None:
        manager = ModelManager()
        await manager.load(
            [], [PipelineConfig.from_json(pipeline)], [LibraryConfig("faulty", str(libraries["faulty"]))]
        )
        servable = manager.repository.pipelines["p"].versions[1].servable
        for values in (X, np.random.default_rng(0).random((1, 150528), dtype=np.float32)):
            outputs = {o.name: o.as_numpy() for o in await servable.infer({"in": values})}
            assert int(outputs["address"][0, 0]) == values.ctypes.data
            np.testing.assert_array_equal(outputs["out"], values)
        manager.unload()

    asyncio.run(run())


def test_the_documented_c_example_serves_as_written(tmp_path):
    """docs/custom_nodes.md's C example: examples/custom_nodes/add_one.c built with the documented command's flags
    and the test libraries' warnings as errors, served over gRPC with the documented config.json as it is written
    (its relative paths read from the test's directory). tests/e2e/test_docs_examples.py runs the doc's commands."""
    from ..support.c_libraries import EXAMPLES, build_library

    docs = (Path(__file__).resolve().parents[2] / "docs" / "custom_nodes.md").read_text()
    example = docs[docs.index("### An example") :]
    document = example[example.index("```json") + len("```json") : example.index("```", example.index("```json") + 7)]
    assert build_library("add_one", tmp_path / "nodes", sources=EXAMPLES) == tmp_path / "nodes" / "libadd_one.so"
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    server = serve_config(tmp_path, json.loads(document))
    try:
        request = service_pb2.ModelInferRequest(model_name="plus_three")
        request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
        request.raw_input_contents.append(X.tobytes())
        reply = server.stub.ModelInfer(request, timeout=30)
        np.testing.assert_array_equal(np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(1, 10), X + 3)
    finally:
        server.stop()


def test_a_fast_c_node_goes_inline_and_a_node_without_threshold_stays_on_the_pool(tmp_path, libraries):
    """In-process: a node whose calls take microseconds runs on the event loop after its warm-up (the threshold, 1 s,
    leaves no doubt on a busy machine), one with no inline threshold stays on the user-code pool; both answer the same values, and a closed node is deinitialized only
    once the last of its output buffers is released."""
    import asyncio

    from pyovms.custom_nodes.interface import LibraryConfig
    from pyovms.custom_nodes.loader import load_library

    async def run() -> None:
        fast = load_library(LibraryConfig("add_sub", str(libraries["add_sub"]))).instantiate("n", {"add": "1"}, 1.0)
        never = load_library(LibraryConfig("add_sub", str(libraries["add_sub"]))).instantiate("m", {"add": "1"}, 0.0)
        for _ in range(40):
            for node in (fast, never):
                got = await node.execute({"input_numbers": X}, ["output_numbers"])
                np.testing.assert_array_equal(got["output_numbers"], X + 1)
        assert fast._choice.inline and not never._choice.inline
        fast.close()
        never.close()
        assert fast.deinitialized and not never.deinitialized  # `got` still holds an output buffer of `never`
        del got  # the pool thread and its future may hold the last result a moment longer: poll
        for _ in range(6000):
            if never.deinitialized:
                break
            await asyncio.sleep(0.01)
        assert never.deinitialized

    asyncio.run(run())
