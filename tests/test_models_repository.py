"""Health, metadata, versions and policies, failing models, mapping, layout, dynamic shapes, formats, streams."""

from __future__ import annotations

import json
from importlib.metadata import version as package_version

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from . import models
from .server_process import ServerProcess


def infer(client, model: str, name: str, array: np.ndarray, version: str = "", datatype: str = "FP32"):
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return client.infer(model, [tensor], model_version=version)


def shapes(metadata) -> list[tuple[str, str, list[int]]]:
    return [(t.name, t.datatype, list(t.shape)) for t in [*metadata.inputs, *metadata.outputs]]


def test_server_health_and_metadata(client, stub):
    assert client.is_server_live() and client.is_server_ready()
    metadata = stub.ServerMetadata(service_pb2.ServerMetadataRequest())
    assert (metadata.name, metadata.version, list(metadata.extensions)) == ("pyovms", package_version("pyovms"), [])


def test_model_metadata(client):
    metadata = client.get_model_metadata("dummy")
    assert (metadata.name, list(metadata.versions), metadata.platform) == ("dummy", ["1"], "OpenVINO")
    assert shapes(metadata) == [("b", "FP32", [1, 10]), ("a", "FP32", [1, 10])]
    outputs = client.get_model_metadata("three_outputs").outputs
    assert [o.name for o in outputs] == ["negated", "plus_one", "times_two"]


@pytest.mark.parametrize(
    ("model", "served"),
    [
        ("versions_default", [3]),
        ("versions_all", [1, 2, 3]),
        ("versions_latest2", [2, 3]),
        ("versions_specific", [1, 3]),
    ],
)
def test_version_policies(client, stub, model, served):
    assert list(client.get_model_metadata(model).versions) == [str(v) for v in served]
    for version in (1, 2, 3):
        request = service_pb2.ModelReadyRequest(name=model, version=str(version))
        if version in served:
            assert stub.ModelReady(request).ready is True
            result = infer(client, model, "x", np.zeros((1, 1), np.float32), version=str(version))
            assert result.as_numpy("y").item() == version
            assert result.get_response().model_version == str(version)
        else:
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelReady(request)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    default = infer(client, model, "x", np.zeros((1, 1), np.float32))
    assert default.as_numpy("y").item() == max(served)
    assert client.get_model_metadata(model, model_version=str(served[0])).versions == [str(v) for v in served]


def test_newest_version_failing_falls_back(client, stub):
    assert list(client.get_model_metadata("fallback").versions) == ["1"]
    assert infer(client, "fallback", "x", np.zeros((1, 1), np.float32)).as_numpy("y").item() == 1
    assert stub.ModelReady(service_pb2.ModelReadyRequest(name="fallback", version="2")).ready is False
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("fallback", model_version="2")
    assert info.value.status() == "StatusCode.UNAVAILABLE"
    assert info.value.message().startswith("Model with requested version is not loaded yet")


def test_failing_models_leave_the_server_serving(client, stub):
    assert client.is_server_ready()
    for name in ("broken", "missing_path"):
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelReady(service_pb2.ModelReadyRequest(name=name))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details().startswith("Model with requested version is not found")
    assert client.is_model_ready("dummy")


def test_mapping_config_renames_tensors(client):
    metadata = client.get_model_metadata("mapped")
    assert shapes(metadata) == [("input_alias", "FP32", [1, 10]), ("output_alias", "FP32", [1, 10])]
    result = infer(client, "mapped", "input_alias", np.ones((1, 10), np.float32))
    np.testing.assert_array_equal(result.as_numpy("output_alias"), np.full((1, 10), 2, np.float32))


def test_layout_nhwc_to_nchw_adds_a_transpose(client):
    assert shapes(client.get_model_metadata("layout_nhwc")) == [
        ("x", "FP32", [1, 4, 5, 3]),
        ("y", "FP32", [1, 3, 4, 5]),
    ]
    nhwc = np.arange(60, dtype=np.float32).reshape(1, 4, 5, 3) - 30
    result = infer(client, "layout_nhwc", "x", nhwc)
    np.testing.assert_array_equal(result.as_numpy("y"), np.maximum(nhwc.transpose(0, 3, 1, 2), 0))
    assert shapes(client.get_model_metadata("layout_annotated"))[0] == ("x", "FP32", [1, 3, 4, 5])


def test_dynamic_and_range_dimensions(client):
    assert shapes(client.get_model_metadata("dynamic"))[0] == ("x", "FP32", [-1, -1])
    for shape in [(1, 1), (3, 7), (2, 0)]:
        data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(infer(client, "dynamic", "x", data).as_numpy("y"), np.maximum(data, 0))
    assert shapes(client.get_model_metadata("ranged"))[0] == ("x", "FP32", [-1, -1])
    assert infer(client, "ranged", "x", np.ones((2, 5), np.float32)).as_numpy("y").shape == (2, 5)
    with pytest.raises(InferenceServerException) as info:
        infer(client, "ranged", "x", np.ones((5, 5), np.float32))
    assert info.value.message() == "Invalid input batch size - Expected: [1~4]; Actual: 5; input name: x"
    assert shapes(client.get_model_metadata("batch_any"))[0] == ("b", "FP32", [-1, 10])
    assert infer(client, "batch_any", "b", np.ones((7, 10), np.float32)).as_numpy("a").shape == (7, 10)
    assert infer(client, "batch_range", "b", np.ones((3, 10), np.float32)).as_numpy("a").shape == (3, 10)
    assert shapes(client.get_model_metadata("batch_fixed"))[0] == ("b", "FP32", [2, 10])


@pytest.mark.parametrize("model", ["dummy_onnx", "dummy_onnx_file"])
def test_onnx_models(client, model):
    metadata = client.get_model_metadata(model)
    assert (list(metadata.versions), shapes(metadata)) == (["1"], [("b", "FP32", [1, 10]), ("a", "FP32", [1, 10])])
    result = infer(client, model, "b", np.arange(10, dtype=np.float32).reshape(1, 10))
    np.testing.assert_array_equal(result.as_numpy("a"), np.arange(1, 11, dtype=np.float32).reshape(1, 10))


def test_stream_infer_answers_each_request_with_an_error(stub):
    def requests():
        for name in ("dummy", "nope", "dummy"):
            message = service_pb2.ModelInferRequest(model_name=name)
            message.inputs.add(name="b", datatype="FP32", shape=[1, 10])
            message.raw_input_contents.append(bytes(40))
            yield message

    answers = list(stub.ModelStreamInfer(requests(), timeout=10))
    assert [a.error_message.split(" - ")[0] for a in answers] == [
        "Functionality not implemented",
        "Model with requested name is not found",
        "Functionality not implemented",
    ]
    assert "streaming is served for graphs only" in answers[0].error_message


# Servers of their own: relative base paths, single-model mode, CLI version policy and fallback.


@pytest.fixture(scope="module")
def single_model_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    for version in (1, 2):
        models.build_add_constant(root / "m" / str(version) / "model.xml", [1, 10], float(version))
    models.write_broken(root / "m" / "3")
    process = ServerProcess(
        [
            "--model_name",
            "m",
            "--model_path",
            str(root / "m"),
            "--shape",
            "(1:3,10)",
            "--model_version_policy",
            '{"latest": {"num_versions": 2}}',
            "--nireq",
            "2",
            "--plugin_config",
            '{"NUM_STREAMS": "1"}',
        ],
        root / "log",
    )
    yield process
    process.stop()


def test_single_model_mode_with_cli_options(single_model_server):
    client = grpcclient.InferenceServerClient(single_model_server.address)
    metadata = client.get_model_metadata("m")
    # latest 2 of {1, 2, 3}: 3 fails to load, so the policy is applied again to {1, 2}.
    assert list(metadata.versions) == ["1", "2"]
    assert shapes(metadata)[0] == ("x", "FP32", [-1, 10])
    result = infer(client, "m", "x", np.zeros((3, 10), np.float32))
    np.testing.assert_array_equal(result.as_numpy("y"), np.full((3, 10), 2, np.float32))
    assert "Loaded model m; version: 2; nireq: 2" in single_model_server.log()
    client.close()


def test_relative_base_path_resolves_against_the_config_file(tmp_path):
    models.build_dummy(tmp_path / "configs" / "models" / "d" / "1" / "model.xml")
    config = tmp_path / "configs" / "config.json"
    config.write_text(json.dumps({"model_config_list": [{"config": {"name": "d", "base_path": "models/d"}}]}))
    process = ServerProcess(["--config_path", str(tmp_path / "configs")], tmp_path / "log")
    try:
        client = grpcclient.InferenceServerClient(process.address)
        assert client.is_model_ready("d")
        client.close()
    finally:
        process.stop()
