"""Pipeline demultiplexing (spec §5.2): static and dynamic demultiplexers, gathering at a node and at the response,
nested demultiplexers gathered level by level, demultiplexing at the pipeline entry (with binary images, 5-D), zero
branches, and the load-time rules. (C nodes demultiplexing and gathering: test_custom_nodes_c.py.)"""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.server_process import serve_config
from .test_pipelines import _custom, _node, _pipeline

NODES = """
import numpy as np

def get_inputs_info(params, state):
    if params["role"] == "tile":
        return {"x": ("FP32", [1, 10])}
    return {"x": ("FP32", [-1, 1, 10])}

def get_outputs_info(params, state):
    if params["role"] == "tile":
        return {"y": ("FP32", [-1, 1, 10])}
    return {"y": ("FP32", [1, 10])}

def execute(inputs, params, state):
    x = inputs["x"]
    if params["role"] == "tile":  # n copies, the i-th plus i; n from the first value when params say "input"
        n = int(x[0, 0]) if params["n"] == "input" else int(params["n"])
        return {"y": np.stack([x + i for i in range(n)]) if n else np.zeros((0, 1, 10), np.float32)}
    return {"y": x.sum(axis=0)}
"""


def _tile(name: str, source: tuple[str, str], n: str, **extra) -> dict:
    node = _custom(name, "nodes", {"x": source}, {"y": "tiles"}, role="tile", n=n)
    node.update(extra)
    return node


STATIC_GATHER = _pipeline(
    "static_gather",
    ["in"],
    [
        _tile("tile", ("request", "in"), "3", demultiply_count=3),
        _node("model", "dummy", {"b": ("tile", "tiles")}, {"a": "plus"}),
        {**_custom("sum", "nodes", {"x": ("model", "plus")}, {"y": "total"}, role="sum"), "gather_from_node": "tile"},
    ],
    {"out": ("sum", "total")},
)
DYNAMIC = _pipeline(
    "dynamic",
    ["in"],
    [
        _tile("tile", ("request", "in"), "input", demultiply_count=-1),
        _node("model", "dummy", {"b": ("tile", "tiles")}, {"a": "plus"}),
    ],
    {"out": ("model", "plus")},
)
NESTED = _pipeline(
    "nested",
    ["in"],
    [
        _tile("outer", ("request", "in"), "2", demultiply_count=2),
        _tile("inner", ("outer", "tiles"), "3", demultiply_count=3),
        _node("model", "dummy", {"b": ("inner", "tiles")}, {"a": "plus"}),
        {**_custom("sum_inner", "nodes", {"x": ("model", "plus")}, {"y": "total"}, role="sum"), "gather_from_node": "inner"},
        {**_custom("sum_outer", "nodes", {"x": ("sum_inner", "total")}, {"y": "total"}, role="sum"),
         "gather_from_node": "outer"},
    ],
    {"total": ("sum_outer", "total"), "per_outer": ("sum_inner", "total"), "all": ("model", "plus")},
)  # fmt: skip
ENTRY = {**_pipeline("entry", ["in"], [_node("model", "dummy", {"b": ("request", "in")}, {"a": "plus"})],
                     {"out": ("model", "plus")}), "demultiply_count": -1}  # fmt: skip
IMAGES = {**_pipeline("images", ["image"], [_node("model", "nhwc", {"x": ("request", "image")}, {"y": "pixels"})],
                      {"out": ("model", "pixels")}), "demultiply_count": 0}  # fmt: skip

INVALID = {
    "gather_from_entry": (
        {**ENTRY, "nodes": [{**ENTRY["nodes"][0], "gather_from_node": "request"}]},
        "Gathering from entry node is not allowed - node model",
    ),
    "gather_missing": (
        {**DYNAMIC, "nodes": [DYNAMIC["nodes"][0], {**DYNAMIC["nodes"][1], "gather_from_node": "ghost"}]},
        "Gather node refers to not existing node - node model: ghost",
    ),
    "gather_not_demux": (
        {**STATIC_GATHER, "nodes": [*STATIC_GATHER["nodes"][:2], {**STATIC_GATHER["nodes"][2], "gather_from_node": "model"}]},
        "Gather node refers to node that isn't demultiplexer - node sum: model",
    ),
    "two_dynamic": (
        {**DYNAMIC, "demultiply_count": -1},
        "Pipeline can have only one dynamic demultiplexer - request, tile",
    ),
    "count_mismatch": (
        _pipeline("x", ["in"], [_node("a", "dummy", {"b": ("request", "in")}, {"a": "a"}, demultiply_count=3),
                                _node("b", "vector_sink", {"x": ("a", "a")}, {"y": "y"})], {"y": ("b", "y")}),
        "Demultiplication count does not match tensor first dimension - node a output a: 1 vs 3",
    ),
    "not_enough_dims": (
        _pipeline("x", ["in"], [_node("a", "vector", {"x": ("request", "in")}, {"y": "y"}, demultiply_count=-1),
                                _node("b", "scalar_sink", {"x": ("a", "y")}, {"y": "z"})], {"z": ("b", "z")}),
        "Pipeline has not enough shape dimensions to demultiply - node a output y: [10]",
    ),
    "nested_gathered_outer_first": (
        {**NESTED, "nodes": [*NESTED["nodes"][:3], {**NESTED["nodes"][3], "gather_from_node": "outer"}, NESTED["nodes"][4]]},
        "Demultiplexer and gather nodes are not in LIFO order - node sum_inner gathers from outer; the innermost is inner",
    ),
    "mixed_levels": (
        _pipeline("x", ["in"], [
            _tile("tile", ("request", "in"), "2", demultiply_count=2),
            _node("join", "add_two", {"input1": ("tile", "tiles"), "input2": ("request", "in")}, {"sum": "s"}),
        ], {"s": ("join", "s")}),
        "Demultiplexer and gather nodes are not in LIFO order - node join reads from different branch levels",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("demux")
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    models.build_add_two(root / "add_two" / "1" / "model.xml")
    models.build_relu(root / "nhwc" / "1" / "model.xml", [1, 8, 6, 3])
    models.build_relu(root / "vector" / "1" / "model.xml", [10])
    models.build_relu(root / "vector_sink" / "1" / "model.xml", [10])
    models.build_relu(root / "scalar_sink" / "1" / "model.xml", [])
    (root / "nodes.py").write_text(NODES)
    invalid = [{**pipeline, "name": name} for name, (pipeline, _) in INVALID.items()]
    config = {
        "custom_node_library_config_list": [{"name": "nodes", "base_path": "nodes.py"}],
        "model_config_list": [
            {"config": {"name": n, "base_path": n, **({"layout": "NHWC"} if n == "nhwc" else {})}}
            for n in ("dummy", "add_two", "nhwc", "vector", "vector_sink", "scalar_sink")
        ],
        "pipeline_config_list": [STATIC_GATHER, DYNAMIC, NESTED, ENTRY, IMAGES, *invalid],
    }
    process = serve_config(root, config)
    yield process
    process.stop()


def _infer(client, pipeline: str, values: np.ndarray, name: str = "in", datatype: str = "FP32") -> np.ndarray:
    tensor = grpcclient.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)
    return client.infer(pipeline, [tensor]).as_numpy("out")


X = np.arange(10, dtype=np.float32).reshape(1, 10)


def test_static_demultiplexer_gathered_by_a_node(client):
    # three branches x + i, each through dummy (+1), summed by the gathering node
    np.testing.assert_array_equal(_infer(client, "static_gather", X), sum(X + i + 1 for i in range(3)))


def test_dynamic_demultiplexer_gathered_at_the_response(client):
    values = X.copy()
    values[0, 0] = 4  # the tile node makes 4 branches
    got = _infer(client, "dynamic", values)
    assert got.shape == (4, 1, 10)
    np.testing.assert_array_equal(got, np.stack([values + i + 1 for i in range(4)]))


def test_nested_demultiplexers_gathered_level_by_level(client):
    # outer branches x + i (2), inner x + i + j (3 in each), dummy + 1; summed over j, then over i
    tensor = grpcclient.InferInput("in", [1, 10], "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer("nested", [tensor])
    everything = np.stack([np.stack([X + i + j + 1 for j in range(3)]) for i in range(2)])
    np.testing.assert_array_equal(result.as_numpy("all"), everything)
    np.testing.assert_array_equal(result.as_numpy("per_outer"), everything.sum(axis=1))
    np.testing.assert_array_equal(result.as_numpy("total"), everything.sum(axis=(0, 1)))
    shapes = {t.name: list(t.shape) for t in client.get_model_metadata("nested").outputs}
    assert shapes == {"all": [2, 3, 1, 10], "per_outer": [2, 1, 10], "total": [1, 10]}


def test_zero_branches_abort(server):
    request = service_pb2.ModelInferRequest(model_name="dynamic")
    request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.zeros((1, 10), dtype=np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert info.value.details() == "Pipeline execution aborted due to no content from custom node - Node: tile"


def test_entry_demultiplexer(client):
    batch = np.arange(30, dtype=np.float32).reshape(3, 1, 10)
    np.testing.assert_array_equal(_infer(client, "entry", batch), batch + 1)
    metadata = client.get_model_metadata("entry")
    assert [(t.name, list(t.shape)) for t in metadata.inputs] == [("in", [-1, 1, 10])]
    assert [(t.name, list(t.shape)) for t in metadata.outputs] == [("out", [-1, 1, 10])]


def test_binary_images_into_an_entry_demultiplexer(client):
    rng = np.random.default_rng(0)
    files = [cv2.imencode(".png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))[1].tobytes() for h, w in
             ((8, 6), (16, 12))]  # fmt: skip
    got = _infer(client, "images", np.array(files, dtype=np.object_), name="image", datatype="BYTES")
    assert got.shape == (2, 1, 8, 6, 3)
    for index, data in enumerate(files):
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        expected = cv2.resize(expected, (6, 8), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(got[index, 0], expected.astype(np.float32))


@pytest.mark.parametrize("name", list(INVALID))
def test_demultiplexing_rules(server, name):
    message = INVALID[name][1]
    assert f"Pipeline {name} is not available: {message}" in server.log()
