"""The system shared memory extension (docs/shared_memory.md) through tritonclient's gRPC and HTTP clients and
`tritonclient.utils.shared_memory`, against a live server: inputs only, outputs only, both, offsets inside one region,
several regions, a pipeline and a graph, unregistering while idle and while a request uses the region, wrong keys,
accesses out of bounds, outputs that do not fit, limits, the extension turned off, and CUDA shared memory refused.
Every value is checked against the same request sent inline."""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from ..support import graph_repository, models, python_libraries
from ..support.server_process import ServerProcess, wait_for

X = np.arange(10, dtype=np.float32).reshape(1, 10)
V = np.array([[1.0, -2.0, 3.5, 4.0]], dtype=np.float32)


def build(root: Path) -> Path:
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    models.build_two_outputs(root / "three" / "1" / "model.xml")
    models.build_passthrough(root / "string" / "1", models.OV_TYPES["BYTES"], [-1])
    models.build_add_constant(root / "big" / "1" / "model.xml", [1, 65536], 0.5)  # 256 KB: read and written in place
    models.build_simple(root / "simple" / "1" / "model.xml")
    (root / "double_then_dummy").mkdir()
    (root / "double_then_dummy" / "graph.pbtxt").write_text(graph_repository.GRAPHS["double_then_dummy"])
    (root / "double_then_dummy" / "double.py").write_text(graph_repository.HANDLERS["double.py"])
    (root / "blocking.py").write_text(python_libraries.BLOCKING)
    node = {"name": "node", "type": "custom", "library_name": "blocking",
            "params": {"started": str(root / "started"), "release": str(root / "release"), "factor": "3"},
            "inputs": [{"x": {"node_name": "request", "data_item": "in"}}], "outputs": [{"data_item": "y", "alias": "y"}]}  # fmt: skip
    config = {
        "model_config_list": [{"config": {"name": n, "base_path": n}}
                              for n in ("dummy", "three", "string", "big", "double_then_dummy", "simple")],
        "custom_node_library_config_list": [{"name": "blocking", "base_path": "blocking.py"}],
        "pipeline_config_list": [{"name": "blocking", "inputs": ["in"], "nodes": [node],
                                  "outputs": [{"out": {"node_name": "node", "data_item": "y"}}]}],
    }  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("shm")
    build(root)
    server = ServerProcess(
        ["--config_path", str(root / "config.json"), "--allow_client_shm", "--shm_max_regions", "6"], root / "log"
    )
    server.root = root
    yield server
    server.stop()


class Regions:
    """Shared memory regions this test creates (unique keys), registered with the server through `client`."""

    def __init__(self, client) -> None:
        self.client = client
        self.handles: dict[str, object] = {}

    def create(self, name: str, byte_size: int, register: bool = True, offset: int = 0) -> object:
        key = f"/pyovms_test_{os.getpid()}_{name}"
        handle = shm.create_shared_memory_region(name, key, byte_size)
        self.handles[name] = handle
        if register:
            self.client.register_system_shared_memory(name, key, byte_size - offset, offset)
        return handle

    def close(self) -> None:
        self.client.unregister_system_shared_memory()
        for handle in self.handles.values():
            shm.destroy_shared_memory_region(handle)


@pytest.fixture(params=["grpc", "http"])
def api(request, server):
    module = grpcclient if request.param == "grpc" else httpclient
    client = module.InferenceServerClient(server.address if module is grpcclient else server.rest_address)
    regions = Regions(client)
    yield module, client, regions
    regions.close()
    client.close()


def _input(module, name: str, values: np.ndarray, datatype: str = "FP32", region: str | None = None, offset: int = 0):
    tensor = module.InferInput(name, list(values.shape), datatype)
    if region is None:
        tensor.set_data_from_numpy(values)
    else:
        tensor.set_shared_memory(region, values.nbytes, offset)
    return tensor


def _output(module, name: str, region: str | None = None, byte_size: int = 0, offset: int = 0):
    output = module.InferRequestedOutput(name)
    if region is not None:
        output.set_shared_memory(region, byte_size, offset)
    return output


def _placed(module, result, name: str) -> tuple[list[int], dict]:
    """The shape and parameters of an output in a response (tritonclient's gRPC `get_output(as_json=True)` returns
    nothing, so the message is read)."""
    output = result.get_output(name)
    if module is httpclient:
        return output["shape"], output["parameters"]
    parameters = {key: getattr(value, value.WhichOneof("parameter_choice")) for key, value in output.parameters.items()}
    return list(output.shape), parameters


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_inputs_only_outputs_only_and_both(api):
    module, client, regions = api
    inline = client.infer("dummy", [_input(module, "b", X)]).as_numpy("a")
    np.testing.assert_array_equal(inline, X + 1)
    source = regions.create("in", X.nbytes)
    target = regions.create("out", X.nbytes)
    shm.set_shared_memory_region(source, [X])
    np.testing.assert_array_equal(client.infer("dummy", [_input(module, "b", X, region="in")]).as_numpy("a"), inline)
    result = client.infer("dummy", [_input(module, "b", X)], outputs=[_output(module, "a", "out", X.nbytes)])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(target, np.float32, [1, 10]), inline)
    assert _placed(module, result, "a") == ([1, 10], {"shared_memory_region": "out", "shared_memory_byte_size": 40,
                                                      "shared_memory_offset": 0})  # fmt: skip
    shm.set_shared_memory_region(target, [np.zeros_like(X)])
    shm.set_shared_memory_region(source, [X * 3])
    client.infer("dummy", [_input(module, "b", X, region="in")], outputs=[_output(module, "a", "out", X.nbytes)])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(target, np.float32, [1, 10]), X * 3 + 1)


def test_large_tensors_in_place_match_inline(api):
    module, client, regions = api
    values = np.random.default_rng(1).random((1, 65536), dtype=np.float32)
    inline = client.infer("big", [_input(module, "x", values)]).as_numpy("y")
    source = regions.create("big_in", 4096 + values.nbytes)
    target = regions.create("big_out", values.nbytes + 8192)
    for round_ in range(3):  # the infer request's own tensors come back between rounds: values never mix
        shm.set_shared_memory_region(source, [values * round_], offset=4096)
        client.infer("big", [_input(module, "x", values, region="big_in", offset=4096)],
                     outputs=[_output(module, "y", "big_out", values.nbytes, 8192)])  # fmt: skip
        np.testing.assert_array_equal(shm.get_contents_as_numpy(target, np.float32, [1, 65536], offset=8192),
                                      values * round_ + 0.5)  # fmt: skip
        mixed = client.infer("big", [_input(module, "x", values)])  # inline in between
        np.testing.assert_array_equal(mixed.as_numpy("y"), inline)


def test_offsets_inside_one_region_and_several_regions(api):
    module, client, regions = api
    inline = client.infer("three", [_input(module, "x", V)])
    handle = regions.create("one", 4096)
    shm.set_shared_memory_region(handle, [V], offset=100)
    outputs = [_output(module, "plus_one", "one", 16, 200), _output(module, "times_two", "one", 16, 300)]
    separate = regions.create("neg", 16)
    outputs.append(_output(module, "negated", "neg", 16))
    result = client.infer("three", [_input(module, "x", V, region="one", offset=100)], outputs=outputs)
    got = {
        "plus_one": shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=200),
        "times_two": shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=300),
        "negated": shm.get_contents_as_numpy(separate, np.float32, [1, 4]),
    }
    for name, values in got.items():
        np.testing.assert_array_equal(values, inline.as_numpy(name))
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=100), V)  # intact
    # an inline output next to outputs in shared memory is still found by name
    mixed = client.infer("three", [_input(module, "x", V)], outputs=[_output(module, "negated", "neg", 16),
                                                                      _output(module, "times_two")])  # fmt: skip
    np.testing.assert_array_equal(mixed.as_numpy("times_two"), V * 2)
    assert result.get_response() is not None


def test_a_region_registered_with_an_offset_into_its_object(api):
    module, client, regions = api
    handle = regions.create("shifted", 4096 + 40, offset=4096)  # region = the object's bytes 4096..4136
    shm.set_shared_memory_region(handle, [X * 2], offset=4096)
    result = client.infer("dummy", [_input(module, "b", X, region="shifted")])
    np.testing.assert_array_equal(result.as_numpy("a"), X * 2 + 1)


def test_strings_a_pipeline_and_a_graph(api):
    module, client, regions = api
    text = np.array([b"hello", b"shared"], dtype=np.object_)
    from tritonclient.utils import serialize_byte_tensor

    framed = serialize_byte_tensor(text)  # one object: the length-prefixed strings
    size = len(framed.item())
    handle = regions.create("text", size)
    shm.set_shared_memory_region(handle, [framed])
    tensor = module.InferInput("in", [2], "BYTES")
    tensor.set_shared_memory("text", size)
    assert client.infer("string", [tensor]).as_numpy("out").tolist() == [b"hello", b"shared"]
    data = regions.create("x", X.nbytes)
    out = regions.create("y", X.nbytes)
    shm.set_shared_memory_region(data, [X])
    client.infer("double_then_dummy", [_input(module, "x", X, region="x")], outputs=[_output(module, "y", "y", 40)])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.float32, [1, 10]), X * 2 + 1)


def test_mistakes_are_named(api, server):
    module, client, regions = api
    grpc_style = module is grpcclient

    def code(error: InferenceServerException, grpc_code: str, http_code: str) -> None:
        assert error.status() == (grpc_code if grpc_style else http_code), error

    handle = regions.create("small", 64)
    shm.set_shared_memory_region(handle, [X])
    error = _error(lambda: client.register_system_shared_memory("small", "/whatever", 8))
    code(error, "StatusCode.ALREADY_EXISTS", "409")
    assert "Shared memory region is already registered - region: small" in error.message()
    error = _error(lambda: client.register_system_shared_memory("ghost", "/pyovms_no_such_key", 8))
    code(error, "StatusCode.NOT_FOUND", "404")
    assert "Unable to open shared memory region - key: /pyovms_no_such_key; region: ghost" in error.message()
    for key in ("../../etc/passwd", "/a/b", "..", ""):
        error = _error(lambda key=key: client.register_system_shared_memory("escape", key, 8))
        code(error, "StatusCode.NOT_FOUND", "404")
        assert "is not a shared memory object name" in error.message()
    key = f"/pyovms_test_{os.getpid()}_small"
    error = _error(lambda: client.register_system_shared_memory("big", key, 128))
    code(error, "StatusCode.INVALID_ARGUMENT", "400")
    assert "offset 0 + byte size 128 is past the end of key" in error.message()
    error = _error(lambda: client.infer("dummy", [_input(module, "b", X, region="small", offset=40)]))
    code(error, "StatusCode.INVALID_ARGUMENT", "400")
    assert (
        "Shared memory access out of bounds - input b: offset 40 + byte size 40 is past the end of region small (64 bytes)"
        in error.message()
    )
    error = _error(lambda: client.infer("dummy", [_input(module, "b", X, region="nowhere")]))
    code(error, "StatusCode.NOT_FOUND", "404")
    assert "Unable to find shared memory region - region: nowhere" in error.message()
    error = _error(lambda: client.infer("dummy", [_input(module, "b", X)], outputs=[_output(module, "a", "small", 16)]))
    code(error, "StatusCode.INVALID_ARGUMENT", "400")
    assert "output a: 40 bytes do not fit in 16 bytes at offset 0 of region small" in error.message()
    tensor = _input(module, "b", X[:, :5], region="small")  # 20 bytes for a [1,10] input: validation's message
    tensor.set_shape([1, 10])
    error = _error(lambda: client.infer("dummy", [tensor]))
    assert (
        "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 20 bytes; input name: b" in error.message()
    )
    error = _error(lambda: client.get_system_shared_memory_status("nowhere"))
    code(error, "StatusCode.NOT_FOUND", "404")
    np.testing.assert_array_equal(client.infer("dummy", [_input(module, "b", X, region="small")]).as_numpy("a"), X + 1)


def test_the_region_limit(api):
    module, client, regions = api  # the server allows 6 regions (--shm_max_regions 6)
    for index in range(6):
        regions.create(f"r{index}", 64)
    error = _error(lambda: regions.create("r6", 64))
    assert error.status() in ("StatusCode.RESOURCE_EXHAUSTED", "429")
    assert "Shared memory registration limit reached - 6 regions are registered (--shm_max_regions)" in error.message()
    client.unregister_system_shared_memory("r0")
    regions.client.register_system_shared_memory("r6", f"/pyovms_test_{os.getpid()}_r6", 64)
    names = client.get_system_shared_memory_status(as_json=True) if module is grpcclient else None
    status = names["regions"] if names else {r["name"]: r for r in client.get_system_shared_memory_status()}
    assert sorted(status) == ["r1", "r2", "r3", "r4", "r5", "r6"]


def _mapped(server, key: str) -> bool:
    """Whether the server process maps the shared memory object `key`."""
    return f"/dev/shm/{key.lstrip('/')}" in Path(f"/proc/{server.process.pid}/maps").read_text()


def test_unregister_while_idle_and_while_in_use(server):
    client = grpcclient.InferenceServerClient(server.address)
    regions = Regions(client)
    try:
        source = regions.create("idle", X.nbytes)
        shm.set_shared_memory_region(source, [X])
        key = f"/pyovms_test_{os.getpid()}_idle"
        assert _mapped(server, key)
        client.unregister_system_shared_memory("idle")
        assert not _mapped(server, key)
        error = _error(lambda: client.infer("dummy", [_input(grpcclient, "b", X, region="idle")]))
        assert "Unable to find shared memory region - region: idle" in error.message()
        client.unregister_system_shared_memory("idle")  # again: not an error, as in Triton

        data = regions.create("busy_in", X.nbytes)
        out = regions.create("busy_out", X.nbytes)
        shm.set_shared_memory_region(data, [X])
        outcome: dict = {}

        def call() -> None:
            outcome["result"] = client.infer("blocking", [_input(grpcclient, "in", X, region="busy_in")],
                                             outputs=[_output(grpcclient, "out", "busy_out", 40)])  # fmt: skip

        worker = threading.Thread(target=call)
        worker.start()
        wait_for(lambda: (server.root / "started").exists(), timeout=60)
        client.unregister_system_shared_memory()  # every region, one of them in use
        assert client.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}
        busy = f"/pyovms_test_{os.getpid()}_busy_out"
        assert _mapped(server, busy)  # held by the request
        (server.root / "release").touch()
        worker.join(60)
        assert "result" in outcome
        np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.float32, [1, 10]), X * 3)
        wait_for(lambda: not _mapped(server, busy), timeout=60)  # unmapped once the request let it go
    finally:
        (server.root / "release").touch()
        regions.close()
        client.close()


def _region_names(module, client) -> list[str]:
    status = client.get_system_shared_memory_status()
    return sorted(status.regions) if module is grpcclient else sorted(region["name"] for region in status)


def test_cuda_shared_memory_answers_as_a_server_without_gpus(api):
    """Status lists no region and unregister answers OK (Triton's CPU-only answers, which its example clients rely
    on as clean-up); register is refused with Triton's reason, and a named region is not found."""
    module, client, _ = api
    assert client.unregister_cuda_shared_memory() is None
    assert client.unregister_cuda_shared_memory("any_name") is None
    status = client.get_cuda_shared_memory_status()
    assert (status if module is httpclient else list(status.regions)) == []
    error = _error(lambda: client.get_cuda_shared_memory_status("missing"))
    assert error.status() == ("StatusCode.NOT_FOUND" if module is grpcclient else "404")
    assert error.message() == "Unable to find cuda shared memory region - region: missing"
    error = _error(lambda: client.register_cuda_shared_memory("r", b"\0" * 64, 0, 64))
    assert error.status() == ("StatusCode.INVALID_ARGUMENT" if module is grpcclient else "400")
    assert error.message() == (
        "CUDA shared memory is not served - failed to register CUDA shared memory region: 'r', GPUs not supported"
    )


def test_tritons_shm_client_flow(api):
    """The flow of Triton's simple_grpc_shm_client.py and simple_http_shm_client.py, step by step: clean up CUDA and
    system regions, put the outputs and the inputs in regions of their own, infer model `simple`, read the results
    from shared memory, check the status, unregister."""
    module, client, _ = api
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()
    input0 = np.arange(16, dtype=np.int32).reshape(1, 16)
    input1 = np.ones((1, 16), dtype=np.int32)
    size = input0.nbytes
    prefix = f"/pyovms_flow_{os.getpid()}_{module.__name__.split('.')[-1]}"
    out = shm.create_shared_memory_region("output_data", prefix + "_out", size * 2)
    inp = shm.create_shared_memory_region("input_data", prefix + "_in", size * 2)
    try:
        client.register_system_shared_memory("output_data", prefix + "_out", size * 2)
        shm.set_shared_memory_region(inp, [input0])
        shm.set_shared_memory_region(inp, [input1], offset=size)
        client.register_system_shared_memory("input_data", prefix + "_in", size * 2)
        inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory("input_data", size)
        inputs[1].set_shared_memory("input_data", size, offset=size)
        outputs = [
            _output(module, "OUTPUT0", "output_data", size),
            _output(module, "OUTPUT1", "output_data", size, size),
        ]
        results = client.infer("simple", inputs, outputs=outputs)
        for name, offset, expected in (("OUTPUT0", 0, input0 + input1), ("OUTPUT1", size, input0 - input1)):
            shape, parameters = _placed(module, results, name)
            assert shape == [1, 16] and parameters["shared_memory_region"] == "output_data"
            values = shm.get_contents_as_numpy(out, np.int32, shape, offset=offset)
            np.testing.assert_array_equal(values, expected)
        assert _region_names(module, client) == ["input_data", "output_data"]
        client.unregister_system_shared_memory()
        assert _region_names(module, client) == []
    finally:
        shm.destroy_shared_memory_region(out)
        shm.destroy_shared_memory_region(inp)


def test_off_unless_enabled(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    server = ServerProcess(["--model_name", "dummy", "--model_path", str(tmp_path / "dummy")], tmp_path / "log")
    client = grpcclient.InferenceServerClient(server.address)
    try:
        assert "system_shared_memory" not in client.get_server_metadata(as_json=True)["extensions"]
        for call in (
            lambda: client.register_system_shared_memory("r", "/key", 8),
            lambda: client.unregister_cuda_shared_memory(),  # as Triton refuses it without --allow-client-shm
            lambda: client.register_cuda_shared_memory("r", b"\0" * 64, 0, 64),
        ):
            error = _error(call)
            assert error.status() == "StatusCode.FAILED_PRECONDITION"
            assert error.message() == "System shared memory is not enabled - start the server with --allow_client_shm"
        assert list(client.get_cuda_shared_memory_status().regions) == []
        error = _error(lambda: client.infer("dummy", [_input(grpcclient, "b", X, region="r")]))
        assert error.message() == "System shared memory is not enabled - start the server with --allow_client_shm"
        np.testing.assert_array_equal(client.infer("dummy", [_input(grpcclient, "b", X)]).as_numpy("a"), X + 1)
    finally:
        client.close()
        server.stop()


def test_openvino_reads_and_writes_shared_tensors_in_place_then_gets_its_own_back(tmp_path):
    """In-process, real OpenVINO: tensors given as shared are the memory OpenVINO reads and writes (their addresses
    are the infer request's tensors during the inference), and the next inference runs on the request's own tensors
    again. Then a model version writes a large output straight into an array over an mmap."""
    import asyncio
    import mmap

    import openvino as ov

    from pyovms.repository.config import ModelConfig
    from pyovms.scheduling.infer_requests import InferRequestPool, Shared
    from pyovms.servables.openvino_model import OpenVinoModel

    width = 32768  # 128 KB: above the size read and written in place
    model_path = models.build_add_constant(tmp_path / "m" / "1" / "model.xml", [1, width], 1.0)
    compiled = ov.Core().compile_model(str(model_path), "CPU")
    seen: list[tuple[int, int]] = []

    def collect(request, _):
        seen.append((request.get_input_tensor(0).data.ctypes.data, request.get_output_tensor(0).data.ctypes.data))
        return request.get_output_tensor(0).data.copy()

    source = np.arange(width, dtype=np.float32).reshape(1, width)
    target = np.zeros((1, width), dtype=np.float32)

    async def run() -> None:
        pool = InferRequestPool(compiled, 1, collect)
        shared = Shared([(0, ov.Tensor(source, shared_memory=True))], [(0, ov.Tensor(target, shared_memory=True))])
        await pool.run([], None, shared)
        assert seen[0] == (source.ctypes.data, target.ctypes.data)
        np.testing.assert_array_equal(target, source + 1)
        again = await pool.run([(0, source * 2)], None)
        assert seen[1][0] != source.ctypes.data and seen[1][1] != target.ctypes.data
        np.testing.assert_array_equal(again, source * 2 + 1)
        np.testing.assert_array_equal(target, source + 1)  # untouched by the second inference

        version = OpenVinoModel.load(ov.Core(), ModelConfig("m", str(tmp_path / "m")), 1, tmp_path / "m" / "1")
        memory = mmap.mmap(-1, 2 * source.nbytes)
        view = memoryview(memory)
        input_array = np.frombuffer(view[: source.nbytes], np.float32).reshape(1, width)
        input_array[...] = source
        output_array = np.frombuffer(view[source.nbytes :], np.float32).reshape(1, width)
        (output,) = await version.infer({"x": input_array}, (), {"y": output_array})
        assert output.raw == b"" and output.shape == (1, width)
        np.testing.assert_array_equal(output_array, source + 1)
        (copied,) = await version.infer({"x": input_array})
        np.testing.assert_array_equal(copied.as_numpy(), source + 1)
        del input_array, output_array, view

    asyncio.run(run())


def test_the_readme_example_runs_as_written(server, capsys):
    """README's six-line example, twice against this server (its address and a key of this test's own): it cleans up
    after itself, so it runs again, and leaves no region behind."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python", readme.index("shared memory instead")) + len("```python")
    example = readme[start : readme.index("```", start)]
    assert len(example.strip().splitlines()) == 6
    key = f"/pyovms_readme_{os.getpid()}"
    for _ in range(2):
        exec(example.replace("127.0.0.1:9000", server.address).replace("/my_input", key), {})  # as written
        assert capsys.readouterr().out == "[[ 1.  2.  3.  4.  5.  6.  7.  8.  9. 10.]]\n"
    client = grpcclient.InferenceServerClient(server.address)
    assert "in" not in client.get_system_shared_memory_status(as_json=True).get("regions", {})
    client.close()
    assert not (Path("/dev/shm") / key.lstrip("/")).exists()


def test_the_byte_limit_in_process(tmp_path):
    """--shm_max_bytes: a registration past the total is refused, naming the limit; what fits is registered."""
    from pyovms.errors import ServingError
    from pyovms.tensors.shared_memory import SharedMemoryRegistry

    key = f"pyovms_test_{os.getpid()}_limit"
    path = Path("/dev/shm") / key
    path.write_bytes(bytes(8192))
    registry = SharedMemoryRegistry(max_regions=10, max_bytes=6000)
    try:
        registry.register("a", key, 0, 4096)
        with pytest.raises(ServingError) as info:
            registry.register("b", key, 4096, 4096)
        assert str(info.value) == (
            "Shared memory registration limit reached - region: b; 4096 bytes registered + 4096 > 6000 (--shm_max_bytes)"
        )
        registry.register("c", key, 4096, 1000)
        assert [r.name for r in registry.status()] == ["a", "c"] and registry.mapped == 2
    finally:
        registry.unregister()
        path.unlink()
    assert registry.mapped == 0


def test_streams_read_inputs_from_regions(server):
    """ModelStreamInfer with inputs in a region: a graph stream, its first request included (the graph keeps its
    packets, so the server reads the region when the request arrives), and a model stream (ModelInfer's rules, outputs
    in regions too)."""
    client = grpcclient.InferenceServerClient(server.address)
    regions = Regions(client)
    answers: queue.Queue = queue.Queue()
    try:
        shm.set_shared_memory_region(regions.create("stream_x", X.nbytes), [X])
        out = regions.create("stream_y", X.nbytes)
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            for _ in range(2):
                client.async_stream_infer("double_then_dummy", [_input(grpcclient, "x", X, region="stream_x")])
            received = [answers.get(timeout=30) for _ in range(2)]
        finally:
            client.stop_stream()
        assert [error for _, error in received] == [None, None]
        for result, _ in received:
            np.testing.assert_array_equal(result.as_numpy("y"), X * 2 + 1)
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            client.async_stream_infer(
                "dummy",
                [_input(grpcclient, "b", X, region="stream_x")],
                outputs=[_output(grpcclient, "a", "stream_y", 40)],
            )
            result, error = answers.get(timeout=30)
        finally:
            client.stop_stream()
        assert error is None, error
        np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.float32, [1, 10]), X + 1)
    finally:
        regions.close()
        client.close()
