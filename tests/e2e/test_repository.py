"""Repository, health and model lifecycle over gRPC: server health and metadata, version policies and default
versions, load failures, mapping_config.json, layouts, dynamic and ranged dimensions, ONNX files, relative base
paths, single-model mode and ModelStreamInfer on models (spec §2.2, §2.5, §4.1-§4.6)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.server_process import ServerProcess, wait_for

NAME_MISSING = "Model with requested name is not found"
VERSION_MISSING = "Model with requested version is not found"
NOT_LOADED_YET = "Model with requested version is not loaded yet"

NUMPY_TO_KSERVE = {np.dtype(np.float32): "FP32"}


# ---------------------------------------------------------------------------------------------- helpers


def _request(model: str, inputs: dict[str, np.ndarray], version: str = "") -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, array in inputs.items():
        request.inputs.add(name=name, datatype=NUMPY_TO_KSERVE[array.dtype], shape=list(array.shape))
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return request


def _infer(stub, model: str, inputs: dict[str, np.ndarray], version: str = "") -> service_pb2.ModelInferResponse:
    return stub.ModelInfer(_request(model, inputs, version), timeout=30)


def _outputs(response: service_pb2.ModelInferResponse) -> dict[str, np.ndarray]:
    """FP32 outputs by name, decoded from raw_output_contents."""
    assert len(response.raw_output_contents) == len(response.outputs)
    arrays = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        assert tensor.datatype == "FP32"
        arrays[tensor.name] = np.frombuffer(raw, dtype=np.float32).reshape(list(tensor.shape))
    return arrays


def _rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=30, **kwargs)
    return info.value


def _metadata(stub, name: str, version: str = "") -> service_pb2.ModelMetadataResponse:
    return stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=name, version=version), timeout=10)


def _ready(stub, name: str, version: str = "") -> bool:
    return stub.ModelReady(service_pb2.ModelReadyRequest(name=name, version=version), timeout=10).ready


def _shapes(tensors) -> dict[str, list[int]]:
    return {t.name: list(t.shape) for t in tensors}


def _x(rows: int = 1, cols: int = 1, start: float = 0.5) -> np.ndarray:
    return (np.arange(rows * cols, dtype=np.float32) + start).reshape(rows, cols)


# ---------------------------------------------------------------------------------------------- server health


def test_server_live_and_ready(stub):
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live is True
    assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready is True


def test_server_metadata(stub):
    metadata = stub.ServerMetadata(service_pb2.ServerMetadataRequest(), timeout=10)
    assert metadata.name == "pyovms"
    assert metadata.version == importlib.metadata.version("pyovms")
    assert list(metadata.extensions) == [
        "model_configuration",
        "statistics",
    ]  # the repository extension is listed with --allow_model_control


def test_server_metadata_through_tritonclient(client):
    metadata = client.get_server_metadata()
    assert metadata.name == "pyovms"
    assert metadata.version == importlib.metadata.version("pyovms")
    assert client.is_server_live() and client.is_server_ready()


# ---------------------------------------------------------------------------------------------- version policies

POLICIES = {
    "versions_default": [3],
    "versions_all": [1, 2, 3],
    "versions_latest2": [2, 3],
    "versions_specific": [1, 3],
}


@pytest.mark.parametrize(("name", "served"), POLICIES.items())
def test_policy_metadata_lists_served_versions(stub, name, served):
    metadata = _metadata(stub, name)
    assert metadata.name == name
    assert list(metadata.versions) == [str(v) for v in served]
    assert metadata.platform == "OpenVINO"
    assert _shapes(metadata.inputs) == {"x": [1, 1]}
    assert _shapes(metadata.outputs) == {"y": [1, 1]}


@pytest.mark.parametrize(("name", "served"), POLICIES.items())
def test_policy_model_ready_per_version(stub, name, served):
    assert _ready(stub, name) is True
    for version in (1, 2, 3):
        if version in served:
            assert _ready(stub, name, str(version)) is True
            assert list(_metadata(stub, name, str(version)).versions) == [str(v) for v in served]
        else:
            error = _rpc_error(stub.ModelReady, service_pb2.ModelReadyRequest(name=name, version=str(version)))
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error.details().startswith(VERSION_MISSING)


@pytest.mark.parametrize(("name", "served"), POLICIES.items())
def test_policy_default_inference_uses_highest_version(stub, name, served):
    x = _x(start=10.0)
    for version in ("", "0"):  # "0" in ModelInfer means the default version
        response = _infer(stub, name, {"x": x}, version)
        assert response.model_name == name
        assert response.model_version == str(max(served))
        np.testing.assert_array_equal(_outputs(response)["y"], x + max(served))


@pytest.mark.parametrize(("name", "served"), POLICIES.items())
def test_policy_explicit_version_inference(stub, name, served):
    x = _x(start=-4.0)
    for version in (1, 2, 3):
        if version in served:
            response = _infer(stub, name, {"x": x}, str(version))
            assert response.model_version == str(version)
            np.testing.assert_array_equal(_outputs(response)["y"], x + version)
        else:
            error = _rpc_error(stub.ModelInfer, _request(name, {"x": x}, str(version)))
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error.details().startswith(VERSION_MISSING)


def test_version_zero_is_not_default_for_ready_and_metadata(stub):
    """§2.5: `"0"` names no version in ModelReady / ModelMetadata (only ModelInfer treats it as default)."""
    for call, request in (
        (stub.ModelReady, service_pb2.ModelReadyRequest(name="versions_all", version="0")),
        (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="versions_all", version="0")),
    ):
        error = _rpc_error(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details().startswith(VERSION_MISSING)


@pytest.mark.parametrize("version", ["abc", "01", "1.0", " 1"])
def test_invalid_version_format(stub, version):
    error = _rpc_error(stub.ModelInfer, _request("versions_all", {"x": _x()}, version))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("invalid model version format in request")


@pytest.mark.parametrize("version", ["-1", "4", "9223372036854775807"])
def test_version_not_in_model(stub, version):
    error = _rpc_error(stub.ModelInfer, _request("versions_all", {"x": _x()}, version))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details().startswith(VERSION_MISSING)


def test_unknown_model_name(stub):
    for call, request in (
        (stub.ModelReady, service_pb2.ModelReadyRequest(name="no_such_model")),
        (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="no_such_model")),
        (stub.ModelInfer, _request("no_such_model", {"x": _x()})),
        (stub.ModelReady, service_pb2.ModelReadyRequest(name="Versions_All")),  # names are case-sensitive
    ):
        error = _rpc_error(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details().startswith(NAME_MISSING)


# ---------------------------------------------------------------------------------------------- load failures


def test_fallback_serves_lower_version_when_newest_is_broken(stub):
    assert _ready(stub, "fallback") is True
    assert _ready(stub, "fallback", "1") is True
    assert list(_metadata(stub, "fallback").versions) == ["1"]
    x = _x(start=2.0)
    response = _infer(stub, "fallback", {"x": x})
    assert response.model_version == "1"
    np.testing.assert_array_equal(_outputs(response)["y"], x + 1)


def test_fallback_failed_version_stays_loading(stub, server):
    """OVMS keeps a version that failed to load in LOADING (error UNKNOWN): ready false, not NOT_FOUND."""
    assert _ready(stub, "fallback", "2") is False
    error = _rpc_error(stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="fallback", version="2"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith(NOT_LOADED_YET)
    error = _rpc_error(stub.ModelInfer, _request("fallback", {"x": _x()}, "2"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith(NOT_LOADED_YET)
    assert (
        'STATUS CHANGE: Version 2 of model fallback status change. New status: ( "state": "LOADING", '
        '"error_code": "UNKNOWN" )'
    ) in server.log()


def test_failing_models_do_not_stop_the_server(stub):
    assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready is True
    for name in ("broken", "missing_path"):
        for call, request in (
            (stub.ModelReady, service_pb2.ModelReadyRequest(name=name)),
            (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name=name)),
            (stub.ModelInfer, _request(name, {"x": _x()})),
        ):
            error = _rpc_error(call, request)
            assert error.code() == grpc.StatusCode.NOT_FOUND, name
            assert error.details().startswith(VERSION_MISSING), name
    # The version directory of `broken` exists: its version is known but never became AVAILABLE.
    assert _ready(stub, "broken", "1") is False
    # `missing_path` has no version at all.
    error = _rpc_error(stub.ModelReady, service_pb2.ModelReadyRequest(name="missing_path", version="1"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details().startswith(VERSION_MISSING)
    # The good models beside them serve.
    response = _infer(stub, "dummy", {"b": _x(1, 10)})
    np.testing.assert_array_equal(_outputs(response)["a"], _x(1, 10) + 1)


# ---------------------------------------------------------------------------------------------- mapping, layout


def test_mapping_config_renames_inputs_and_outputs(stub):
    metadata = _metadata(stub, "mapped")
    assert _shapes(metadata.inputs) == {"input_alias": [1, 10]}
    assert _shapes(metadata.outputs) == {"output_alias": [1, 10]}
    x = _x(1, 10, start=-3.0)
    response = _infer(stub, "mapped", {"input_alias": x})
    outputs = _outputs(response)
    assert list(outputs) == ["output_alias"]
    np.testing.assert_array_equal(outputs["output_alias"], x + 1)


def test_mapping_config_original_name_is_missing_input(stub):
    error = _rpc_error(stub.ModelInfer, _request("mapped", {"b": _x(1, 10)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Missing input with specific name - Required input: input_alias")


def _signed_image(shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return (np.arange(count, dtype=np.float32) - count / 2).reshape(shape)


def test_layout_nhwc_from_nchw_metadata(stub):
    metadata = _metadata(stub, "layout_nhwc")
    assert _shapes(metadata.inputs) == {"x": [1, 4, 5, 3]}
    assert _shapes(metadata.outputs) == {"y": [1, 3, 4, 5]}


def test_layout_nhwc_from_nchw_inference(stub):
    x = _signed_image((1, 4, 5, 3))
    outputs = _outputs(_infer(stub, "layout_nhwc", {"x": x}))
    assert outputs["y"].shape == (1, 3, 4, 5)
    np.testing.assert_array_equal(outputs["y"], np.maximum(x, 0).transpose(0, 3, 1, 2))


def test_layout_nhwc_rejects_nchw_data(stub):
    error = _rpc_error(stub.ModelInfer, _request("layout_nhwc", {"x": _signed_image((1, 3, 4, 5))}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Invalid input shape - ")


def test_layout_annotation_keeps_shape(stub):
    metadata = _metadata(stub, "layout_annotated")
    assert _shapes(metadata.inputs) == {"x": [1, 3, 4, 5]}
    assert _shapes(metadata.outputs) == {"y": [1, 3, 4, 5]}
    x = _signed_image((1, 3, 4, 5))
    np.testing.assert_array_equal(_outputs(_infer(stub, "layout_annotated", {"x": x}))["y"], np.maximum(x, 0))


# ---------------------------------------------------------------------------------------------- shapes and batch


def test_dynamic_dims(stub):
    assert _shapes(_metadata(stub, "dynamic").inputs) == {"x": [-1, -1]}
    for shape in ((1, 1), (3, 7), (2, 100), (16, 1)):
        x = _signed_image(shape)
        np.testing.assert_array_equal(_outputs(_infer(stub, "dynamic", {"x": x}))["y"], np.maximum(x, 0))


def test_ranged_dims_metadata_and_accepted_shapes(stub):
    metadata = _metadata(stub, "ranged")
    assert _shapes(metadata.inputs) == {"x": [-1, -1]}
    for shape in ((2, 5), (1, 2), (4, 12)):
        x = _signed_image(shape)
        np.testing.assert_array_equal(_outputs(_infer(stub, "ranged", {"x": x}))["y"], np.maximum(x, 0))


def test_ranged_batch_out_of_range(stub):
    error = _rpc_error(stub.ModelInfer, _request("ranged", {"x": _signed_image((5, 5))}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Invalid input batch size - Expected: [1~4]; Actual: 5; input name: x"


@pytest.mark.parametrize("shape", [(2, 13), (2, 1)])
def test_ranged_dim_out_of_range(stub, shape):
    error = _rpc_error(stub.ModelInfer, _request("ranged", {"x": _signed_image(shape)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Invalid input shape - ")
    assert f"Actual: ({shape[0]},{shape[1]})" in error.details()


def test_batch_any(stub):
    assert _shapes(_metadata(stub, "batch_any").inputs) == {"b": [-1, 10]}
    for batch in (1, 5):
        x = _x(batch, 10)
        np.testing.assert_array_equal(_outputs(_infer(stub, "batch_any", {"b": x}))["a"], x + 1)


def test_batch_range(stub):
    assert _shapes(_metadata(stub, "batch_range").inputs) == {"b": [-1, 10]}
    x = _x(3, 10)
    np.testing.assert_array_equal(_outputs(_infer(stub, "batch_range", {"b": x}))["a"], x + 1)
    error = _rpc_error(stub.ModelInfer, _request("batch_range", {"b": _x(4, 10)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Invalid input batch size - Expected: [1~3]; Actual: 4; input name: b"


def test_batch_fixed(stub):
    metadata = _metadata(stub, "batch_fixed")
    assert _shapes(metadata.inputs) == {"b": [2, 10]}
    assert _shapes(metadata.outputs) == {"a": [2, 10]}
    x = _x(2, 10)
    np.testing.assert_array_equal(_outputs(_infer(stub, "batch_fixed", {"b": x}))["a"], x + 1)
    error = _rpc_error(stub.ModelInfer, _request("batch_fixed", {"b": _x(1, 10)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Invalid input batch size - Expected: 2; Actual: 1; input name: b"


# ---------------------------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("name", ["dummy_onnx", "dummy_onnx_file"])
def test_onnx_models(stub, name):
    metadata = _metadata(stub, name)
    assert list(metadata.versions) == ["1"]
    assert metadata.platform == "OpenVINO"
    assert _shapes(metadata.inputs) == {"b": [1, 10]}
    assert _shapes(metadata.outputs) == {"a": [1, 10]}
    assert _ready(stub, name, "1") is True
    x = _x(1, 10, start=-5.0)
    response = _infer(stub, name, {"b": x})
    assert response.model_version == "1"
    np.testing.assert_array_equal(_outputs(response)["a"], x + 1)


# ---------------------------------------------------------------------------------------------- ModelStreamInfer


def test_stream_infer_on_an_unknown_name_ends_with_not_found(stub):
    """Streams on models are tests/e2e/test_model_streams.py's; an unknown first name ends the call, as in OVMS."""
    with pytest.raises(grpc.RpcError) as info:
        list(stub.ModelStreamInfer(iter([_request("no_such_model", {"b": _x(1, 10)})]), timeout=10))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details().startswith("Mediapipe graph definition with requested name is not found - ")


def test_stream_infer_empty_stream(stub):
    assert list(stub.ModelStreamInfer(iter([]), timeout=10)) == []


# ---------------------------------------------------------------------------------------------- extra servers


@pytest.fixture(scope="module")
def relative_server(tmp_path_factory):
    """config.json in a subdirectory, base paths relative to it; a `latest 1` model whose newest version fails."""
    root = tmp_path_factory.mktemp("relative")
    models_dir = root / "models"
    models.build_add_constant(models_dir / "rel" / "1" / "model.xml", [1, 1], 1.0)
    for version in (1, 2):
        models.build_add_constant(models_dir / "latest_one" / str(version) / "model.xml", [1, 1], float(version))
    models.write_broken(models_dir / "latest_one" / "3")
    config_dir = root / "conf"
    config_dir.mkdir()
    config = {
        "model_config_list": [
            {"config": {"name": "relative", "base_path": "../models/rel"}},
            {
                "config": {
                    "name": "latest_one",
                    "base_path": "../models/latest_one",
                    "model_version_policy": {"latest": {"num_versions": 1}},
                }
            },
        ]
    }
    (config_dir / "config.json").write_text(json.dumps(config))
    process = ServerProcess(["--config_path", str(config_dir / "config.json")], root / "server.log")
    yield process
    process.stop()


def test_relative_base_path_resolved_against_config_dir(relative_server):
    # The server runs in the test's working directory, where the relative path means nothing.
    assert not (Path.cwd() / "../models/rel").exists()
    stub = relative_server.stub
    assert _ready(stub, "relative") is True
    assert list(_metadata(stub, "relative").versions) == ["1"]
    x = _x(start=7.0)
    np.testing.assert_array_equal(_outputs(_infer(stub, "relative", {"x": x}))["y"], x + 1)


def test_latest_one_falls_back_when_newest_fails(relative_server):
    stub = relative_server.stub
    assert list(_metadata(stub, "latest_one").versions) == ["2"]
    assert _ready(stub, "latest_one") is True
    assert _ready(stub, "latest_one", "3") is False
    error = _rpc_error(stub.ModelReady, service_pb2.ModelReadyRequest(name="latest_one", version="1"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    x = _x(start=1.0)
    response = _infer(stub, "latest_one", {"x": x})
    assert response.model_version == "2"
    np.testing.assert_array_equal(_outputs(response)["y"], x + 2)


@pytest.fixture(scope="module")
def single_shape_server(tmp_path_factory):
    """Single-model mode: `--shape (1:3,10)` and `--model_version_policy {"all": {}}` over versions 1 and 2."""
    root = tmp_path_factory.mktemp("single_shape")
    for version in (1, 2):
        models.build_add_constant(root / "m" / str(version) / "model.xml", [1, 10], float(version))
    args = ["--model_name", "m", "--model_path", str(root / "m"), "--shape", "(1:3,10)"]
    args += ["--model_version_policy", '{"all": {}}', "--nireq", "2", "--target_device", "CPU"]
    args += ["--plugin_config", '{"NUM_STREAMS": "1"}']
    process = ServerProcess(args, root / "server.log")
    yield process
    process.stop()


def test_single_model_shape_and_policy(single_shape_server):
    stub = single_shape_server.stub
    metadata = _metadata(stub, "m")
    assert metadata.name == "m"
    assert list(metadata.versions) == ["1", "2"]
    assert _shapes(metadata.inputs) == {"x": [-1, 10]}
    assert _shapes(metadata.outputs) == {"y": [-1, 10]}
    assert _ready(stub, "m", "1") is True and _ready(stub, "m", "2") is True
    x = _x(3, 10)
    response = _infer(stub, "m", {"x": x})
    assert response.model_version == "2"
    np.testing.assert_array_equal(_outputs(response)["y"], x + 2)
    np.testing.assert_array_equal(_outputs(_infer(stub, "m", {"x": x}, "1"))["y"], x + 1)
    error = _rpc_error(stub.ModelInfer, _request("m", {"x": _x(4, 10)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Invalid input batch size - Expected: [1~3]; Actual: 4; input name: x"


@pytest.fixture(scope="module")
def single_layout_server(tmp_path_factory):
    """Single-model mode: `--batch_size 2 --layout NHWC:NCHW` on an NCHW [1,3,4,5] model."""
    root = tmp_path_factory.mktemp("single_layout")
    models.build_relu(root / "img" / "1" / "model.xml", [1, 3, 4, 5])
    args = ["--model_name", "img", "--model_path", str(root / "img"), "--batch_size", "2", "--layout", "NHWC:NCHW"]
    process = ServerProcess(args, root / "server.log")
    yield process
    process.stop()


def test_single_model_batch_size_and_layout(single_layout_server):
    stub = single_layout_server.stub
    metadata = _metadata(stub, "img")
    assert list(metadata.versions) == ["1"]
    assert _shapes(metadata.inputs) == {"x": [2, 4, 5, 3]}
    assert _shapes(metadata.outputs) == {"y": [2, 3, 4, 5]}
    x = _signed_image((2, 4, 5, 3))
    outputs = _outputs(_infer(stub, "img", {"x": x}))
    np.testing.assert_array_equal(outputs["y"], np.maximum(x, 0).transpose(0, 3, 1, 2))
    error = _rpc_error(stub.ModelInfer, _request("img", {"x": _signed_image((1, 4, 5, 3))}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Invalid input batch size - Expected: 2; Actual: 1; input name: x"


def test_failed_requests_are_logged_at_debug_and_never_with_a_traceback(server, stub):
    request = service_pb2.ModelInferRequest(model_name="dummy")
    request.inputs.add(name="b", datatype="FP32", shape=[1, 11])
    request.raw_input_contents.append(np.zeros(11, dtype=np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert "Traceback" not in info.value.details()
    expected = "[pyovms.grpc][DEBUG] ModelInfer: Invalid input shape - Expected: (1,10); Actual: (1,11); input name: b"
    wait_for(lambda: expected in server.log(), timeout=60)
