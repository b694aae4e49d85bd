"""DAG pipelines (spec §5, §2.2): chains and diamonds of real models, version pins, metadata and readiness,
request validation, node failures, and every load-time validation error (the pipeline is not available, the
others keep serving)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.server_process import serve_config

NOT_LOADED = "Pipeline is not loaded yet - name: "


def _node(name: str, model: str, inputs: dict[str, tuple[str, str]], outputs: dict[str, str], **extra) -> dict:
    """inputs: model input -> (source node, data item); outputs: model output -> alias."""
    return {
        "name": name,
        "type": "DL model",
        "model_name": model,
        "inputs": [{k: {"node_name": n, "data_item": d}} for k, (n, d) in inputs.items()],
        "outputs": [{"data_item": item, "alias": alias} for item, alias in outputs.items()],
        **extra,
    }


def _pipeline(name: str, inputs: list[str], nodes: list[dict], outputs: dict[str, tuple[str, str]]) -> dict:
    return {
        "name": name,
        "inputs": inputs,
        "nodes": nodes,
        "outputs": [{k: {"node_name": n, "data_item": d}} for k, (n, d) in outputs.items()],
    }


CHAIN = _pipeline(
    "chain",
    ["in"],
    [
        _node("first", "dummy", {"b": ("request", "in")}, {"a": "plus_one"}),
        _node("second", "add_one", {"x": ("first", "plus_one")}, {"y": "plus_two"}),
    ],
    {"out": ("second", "plus_two")},
)
DIAMOND = _pipeline(
    "diamond",
    ["in"],
    [
        _node("left", "dummy", {"b": ("request", "in")}, {"a": "l"}),
        _node("right", "times_two", {"x": ("request", "in")}, {"y": "r"}),
        _node("join", "add_two", {"input1": ("left", "l"), "input2": ("right", "r")}, {"sum": "s"}),
    ],
    {"sum": ("join", "s"), "left": ("left", "l")},
)
PINNED = _pipeline(
    "pinned",
    ["in"],
    [_node("old", "versioned", {"x": ("request", "in")}, {"y": "out"}, version=1)],
    {"out": ("old", "out")},
)
FAILING = _pipeline(
    "failing", ["in"], [_node("odd", "odd_fails", {"x": ("request", "in")}, {"y": "y"})], {"y": ("odd", "y")}
)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "custom_nodes"


def _custom(name: str, library: str, inputs: dict[str, tuple[str, str]], outputs: dict[str, str], **params) -> dict:
    node = _node(name, "", inputs, outputs, params=params)
    node.update(type="custom", library_name=library)
    del node["model_name"]
    return node


CLASSIFY = _pipeline(
    "classify",
    ["in"],
    [
        _node("model", "dummy", {"b": ("request", "in")}, {"a": "scores"}),
        _custom("top", "argmax", {"scores": ("model", "scores")}, {"classes": "c", "probabilities": "p"}, k="3"),
    ],
    {"classes": ("top", "c"), "probabilities": ("top", "p")},
)
RESIZE = _pipeline(
    "resize_then_model",
    ["image"],
    [
        _custom("crop", "resize", {"image": ("request", "image")}, {"image": "small"}, height="4", width="4"),
        _node("model", "relu4", {"x": ("crop", "small")}, {"y": "y"}),
    ],
    {"out": ("model", "y")},
)
RAISING = _pipeline(
    "raising", ["in"], [_custom("r", "raising", {"x": ("request", "in")}, {"y": "y"})], {"y": ("r", "y")}
)
INCOMPLETE = _pipeline(
    "incomplete",
    ["in"],
    [_custom("m", "incomplete", {"x": ("request", "in")}, {"y": "y"}, mode="incomplete")],
    {"y": ("m", "y")},
)
LEAVING = [  # user code that raises what a future or the event loop cannot take
    _pipeline(
        mode, ["in"], [_custom("l", "incomplete", {"x": ("request", "in")}, {"y": "y"}, mode=mode)], {"y": ("l", "y")}
    )
    for mode in ("stop_iteration", "system_exit")
]
RAISING_LIBRARY = """
import sys

def get_inputs_info(params, state):
    return {"x": ("FP32", [1, 10])}

def get_outputs_info(params, state):
    return {"y": ("FP32", [1, 10])}

def execute(inputs, params, state):
    if params.get("mode") == "incomplete":
        return {"other": inputs["x"]}
    if params.get("mode") == "stop_iteration":
        return next(iter([]))
    if params.get("mode") == "system_exit":
        sys.exit(3)
    raise ValueError("boom")
"""

INVALID = {
    "cycle": (
        [
            _node("a", "add_one", {"x": ("b", "out")}, {"y": "out"}),
            _node("b", "add_one", {"x": ("a", "out")}, {"y": "out"}),
        ],
        {"out": ("b", "out")},
        "Pipeline definition contains a cycle - a, b",
    ),
    "missing_node": (
        [_node("a", "add_one", {"x": ("ghost", "out")}, {"y": "out"})],
        {"out": ("a", "out")},
        "Pipeline definition has reference to missing node - node a input x: ghost",
    ),
    "missing_model": (
        [_node("a", "no_such_model", {"x": ("request", "in")}, {"y": "out"})],
        {"out": ("a", "out")},
        "Pipeline definition has reference to missing model - node a: no_such_model",
    ),
    "missing_model_output": (
        [_node("a", "add_one", {"x": ("request", "in")}, {"nope": "out"})],
        {"out": ("a", "out")},
        "Pipeline definition has reference to missing model output - node a: nope",
    ),
    "missing_model_input": (
        [_node("a", "add_one", {"x": ("request", "in"), "extra": ("request", "in")}, {"y": "out"})],
        {"out": ("a", "out")},
        "Pipeline definition has connection to non existing model input - a: extra",
    ),
    "inputs_not_connected": (
        [_node("a", "add_two", {"input1": ("request", "in")}, {"sum": "out"})],
        {"out": ("a", "out")},
        "Pipeline definition does not have connections for all inputs of underlying models - node a: input2",
    ),
    "missing_data_source": (
        [_node("a", "add_one", {"x": ("request", "other")}, {"y": "out"})],
        {"out": ("a", "out")},
        "Pipeline definition has reference to missing data source - node a input x: request/other",
    ),
    "missing_alias": (
        [_node("a", "add_one", {"x": ("request", "in")}, {"y": "out"})],
        {"out": ("a", "not_an_alias")},
        "Pipeline definition has reference to missing data source - pipeline output out: a/not_an_alias",
    ),
    "response_as_source": (
        [_node("a", "add_one", {"x": ("response", "out")}, {"y": "out"})],
        {"out": ("a", "out")},
        "Pipeline definition has response node used as dependency node - node a input x",
    ),
    "unconnected": (
        [
            _node("a", "add_one", {"x": ("request", "in")}, {"y": "out"}),
            _node("lonely", "add_one", {"x": ("request", "in")}, {"y": "out"}),
        ],
        {"out": ("a", "out")},
        "Pipeline definition has unconnected nodes - lonely",
    ),
    "duplicate_names": (
        [
            _node("a", "add_one", {"x": ("request", "in")}, {"y": "out"}),
            _node("a", "add_one", {"x": ("request", "in")}, {"y": "out"}),
        ],
        {"out": ("a", "out")},
        "Pipeline definition has multiple nodes with the same name - a",
    ),
    "tensor_mismatch": (
        [
            _node("a", "add_one", {"x": ("request", "in")}, {"y": "out"}),
            _node("b", "narrow", {"x": ("a", "out")}, {"y": "out"}),
        ],
        {"out": ("b", "out")},
        "Connected tensors differ in shape or precision - a/out FP32 [1, 10] -> b/x FP32 [1, 5]",
    ),
    "missing_version": (
        [_node("a", "versioned", {"x": ("request", "in")}, {"y": "out"}, version=9)],
        {"out": ("a", "out")},
        "node a: version 9 of model versioned",
    ),
    "custom_node": (
        [{"name": "c", "type": "custom", "library_name": "lib", "inputs": [], "outputs": []}],
        {"out": ("c", "out")},
        "Pipeline refers to incorrect library - node c: lib",
    ),
}


def _multiple_connections() -> dict:
    pipeline = _pipeline(
        "multiple_connections", ["in"], [_node("a", "add_one", {"x": ("request", "in")}, {"y": "out"})],
        {"out": ("a", "out")},
    )  # fmt: skip
    pipeline["nodes"][0]["inputs"].append({"x": {"node_name": "request", "data_item": "in"}})
    return pipeline


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    models.build_add_constant(root / "add_one" / "1" / "model.xml", [1, 10], 1.0)
    models.build_add_two(root / "add_two" / "1" / "model.xml")
    models.build_relu(root / "narrow" / "1" / "model.xml", [1, 5])
    for version in (1, 2):
        models.build_add_constant(root / "versioned" / str(version) / "model.xml", [1, 10], 100.0 * version)
    models.build_runtime_failure(root / "odd_fails" / "1" / "model.xml")
    models.build_times_two(root / "times_two" / "1" / "model.xml", [1, 10])
    model_names = ["dummy", "add_one", "add_two", "narrow", "odd_fails", "times_two"]
    invalid = [_pipeline(name, ["in"], nodes, outputs) for name, (nodes, outputs, _) in INVALID.items()]
    models.build_relu(root / "relu4" / "1" / "model.xml", [1, 4, 4, 3])
    model_names.append("relu4")
    (root / "raising.py").write_text(RAISING_LIBRARY)
    (root / "broken.py").write_text("def execute(inputs, params, state):\n    return inputs\n")
    (root / "exits.py").write_text("import sys\nsys.exit(4)\n")
    broken = _pipeline("broken_library", ["in"], [_custom("b", "broken", {"x": ("request", "in")}, {"y": "y"})],
                       {"y": ("b", "y")})  # fmt: skip
    config = {
        "custom_node_library_config_list": [
            {"name": "argmax", "base_path": str(EXAMPLES / "argmax.py")},
            {"name": "resize", "base_path": str(EXAMPLES / "image_resize.py")},
            {"name": "raising", "base_path": "raising.py"},  # relative to config.json
            {"name": "incomplete", "base_path": "raising.py"},
            {"name": "broken", "base_path": "broken.py"},
            {"name": "exits", "base_path": "exits.py"},
        ],
        "model_config_list": [{"config": {"name": n, "base_path": n}} for n in model_names]
        + [{"config": {"name": "versioned", "base_path": "versioned", "model_version_policy": {"all": {}}}}],
        "pipeline_config_list": [
            CHAIN, DIAMOND, PINNED, FAILING, CLASSIFY, RESIZE, RAISING, INCOMPLETE, *LEAVING, broken, *invalid,
            _multiple_connections(),
            _pipeline("dummy", ["in"], [_node("a", "add_one", {"x": ("request", "in")}, {"y": "out"})],
                      {"out": ("a", "out")}),
        ],
    }  # fmt: skip
    process = serve_config(root, config)
    yield process
    process.stop()


def _infer(client, pipeline: str, values: np.ndarray, version: str = "", outputs: list[str] | None = None):
    tensor = grpcclient.InferInput("in", list(values.shape), "FP32")
    tensor.set_data_from_numpy(values)
    requested = [grpcclient.InferRequestedOutput(name) for name in outputs] if outputs else None
    return client.infer(pipeline, [tensor], model_version=version, outputs=requested)


X = np.arange(10, dtype=np.float32).reshape(1, 10)


def test_two_model_chain(client):
    result = _infer(client, "chain", X)
    np.testing.assert_array_equal(result.as_numpy("out"), X + 2)
    assert result.get_response().model_version == "1"


def test_diamond_runs_both_branches_and_joins(client):
    result = _infer(client, "diamond", X)
    np.testing.assert_array_equal(result.as_numpy("sum"), (X + 1) + 2 * X)
    np.testing.assert_array_equal(result.as_numpy("left"), X + 1)
    only = _infer(client, "diamond", X, outputs=["left"])
    assert [o.name for o in only.get_response().outputs] == ["left"]


def test_version_pin_and_version_ignored_for_pipelines(client):
    np.testing.assert_array_equal(_infer(client, "pinned", X).as_numpy("out"), X + 100)
    np.testing.assert_array_equal(_infer(client, "chain", X, version="7").as_numpy("out"), X + 2)


def test_pipeline_metadata_and_readiness(client, server):
    metadata = client.get_model_metadata("diamond")
    assert (metadata.name, list(metadata.versions), metadata.platform) == ("diamond", ["1"], "OpenVINO")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("in", "FP32", [1, 10])]
    assert [(t.name, list(t.shape)) for t in metadata.outputs] == [("left", [1, 10]), ("sum", [1, 10])]
    assert client.is_model_ready("chain") and client.is_model_ready("chain", "3")
    assert not client.is_model_ready("cycle")


def test_rest_and_status(server):
    rest = httpclient.InferenceServerClient(server.rest_address)
    try:
        tensor = httpclient.InferInput("in", [1, 10], "FP32")
        tensor.set_data_from_numpy(X)
        np.testing.assert_array_equal(rest.infer("chain", [tensor]).as_numpy("out"), X + 2)
    finally:
        rest.close()
    import http.client

    connection = http.client.HTTPConnection(server.rest_address, timeout=10)
    connection.request("GET", "/v1/config")
    status = json.loads(connection.getresponse().read())
    connection.close()
    assert status["chain"]["model_version_status"][0]["state"] == "AVAILABLE"
    cycle = status["cycle"]["model_version_status"][0]
    assert (cycle["version"], cycle["state"], cycle["status"]["error_code"]) == ("1", "LOADING", "FAILED_PRECONDITION")
    assert status["dummy"]["model_version_status"][0]["state"] == "AVAILABLE"  # the model, not the clashing pipeline


def test_request_is_validated_against_pipeline_inputs(server):
    request = service_pb2.ModelInferRequest(model_name="chain")
    request.inputs.add(name="in", datatype="FP32", shape=[1, 11])
    request.raw_input_contents.append(np.zeros(11, dtype=np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: in"


def test_invalid_version_text_is_still_rejected(client):
    with pytest.raises(Exception) as info:
        _infer(client, "chain", X, version="abc")
    assert "invalid model version format in request" in str(info.value)


def test_node_failure_names_the_node(server, client):
    request = service_pb2.ModelInferRequest(model_name="failing")
    request.inputs.add(name="in", datatype="FP32", shape=[3])
    request.raw_input_contents.append(np.zeros(3, dtype=np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details().startswith("Internal inference error - Node: odd; ")
    np.testing.assert_array_equal(_infer(client, "chain", X).as_numpy("out"), X + 2)  # still serving


@pytest.mark.parametrize("name", [*INVALID, "multiple_connections"])
def test_invalid_pipelines_are_not_available(server, name):
    expected = (
        INVALID[name][2]
        if name in INVALID
        else "Pipeline definition has multiple connections to the same input of underlying model - a: x"
    )
    request = service_pb2.ModelInferRequest(model_name=name)
    request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(X.tobytes())
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == f"{NOT_LOADED}{name}; {expected}"
    assert f"Pipeline {name} is not available: {expected}" in server.log()


def test_pipeline_named_like_a_model_is_refused(server, client):
    assert "Pipeline dummy is not loaded: Pipeline has the same name as model" in server.log()
    tensor = grpcclient.InferInput("b", [1, 10], "FP32")
    tensor.set_data_from_numpy(X)
    np.testing.assert_array_equal(client.infer("dummy", [tensor]).as_numpy("a"), X + 1)  # the model answers


def test_pipeline_statistics(client):
    before = client.get_inference_statistics("chain").model_stats[0].inference_stats.success.count
    _infer(client, "chain", X)
    after = client.get_inference_statistics("chain").model_stats[0]
    assert (after.name, after.version) == ("chain", "1")
    assert after.inference_stats.success.count == before + 1


# ---------------------------------------------------------------------------------------------- custom nodes


def test_custom_node_after_a_model(client):
    values = np.array([[3, 9, 1, 7, 0, 8, 2, 6, 5, 4]], dtype=np.float32)
    result = _infer(client, "classify", values)
    np.testing.assert_array_equal(result.as_numpy("classes"), [[1, 5, 3]])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), [[10, 9, 8]])


def test_custom_node_before_a_model(client):
    import cv2

    image = np.random.default_rng(0).random((1, 6, 10, 3), dtype=np.float32)
    tensor = grpcclient.InferInput("image", [1, 6, 10, 3], "FP32")
    tensor.set_data_from_numpy(image)
    got = client.infer("resize_then_model", [tensor]).as_numpy("out")
    expected = cv2.resize(image[0, :, 2:8], (4, 4))[np.newaxis]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    metadata = client.get_model_metadata("resize_then_model")
    assert [(t.name, list(t.shape)) for t in metadata.inputs] == [("image", [-1, -1, -1, 3])]


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("raising", "Custom node failed during execution - Node: r; ValueError: boom"),
        ("incomplete", "Custom node output is missing - Node: m; y"),
        ("stop_iteration", "Custom node failed during execution - Node: l; RuntimeError: StopIteration"),
        ("system_exit", "Custom node failed during execution - Node: l; RuntimeError: SystemExit: 3"),
    ],
)
def test_custom_node_failures(server, client, pipeline, message):
    request = service_pb2.ModelInferRequest(model_name=pipeline)
    request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(X.tobytes())
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == message
    np.testing.assert_array_equal(_infer(client, "chain", X).as_numpy("out"), X + 2)


def test_library_that_exits_on_import_is_not_loaded_and_the_server_goes_on(server, client):
    assert "Custom node library exits not loaded: Pipeline refers to incorrect library - exits: SystemExit: 4" in (
        server.log()
    )
    np.testing.assert_array_equal(_infer(client, "chain", X).as_numpy("out"), X + 2)


def test_library_without_the_interface_makes_its_pipelines_unavailable(server):
    assert "Custom node library broken not loaded: Pipeline refers to incorrect library - broken: no " in server.log()
    assert "Pipeline broken_library is not available: Pipeline refers to incorrect library - node b: broken" in (
        server.log()
    )
