"""Triton's ModelConfig and ModelStatistics RPCs (the `model_configuration` and `statistics` extensions that
perf_analyzer uses), through tritonclient and raw stubs."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2, service_pb2
from tritonclient.utils import InferenceServerException

NAME_MISSING = "Model with requested name is not found"
VERSION_MISSING = "Model with requested version is not found"


def test_server_metadata_lists_the_extensions(stub):  # perf_analyzer asks for statistics only when listed
    metadata = stub.ServerMetadata(service_pb2.ServerMetadataRequest(), timeout=10)
    assert list(metadata.extensions) == [
        "model_configuration",
        "statistics",
    ]  # the repository extension is listed with --allow_model_control


@pytest.mark.parametrize(
    ("model", "inputs", "outputs"),
    [
        ("dummy", [("b", "TYPE_FP32", [1, 10])], [("a", "TYPE_FP32", [1, 10])]),
        ("dynamic", [("x", "TYPE_FP32", [-1, -1])], [("y", "TYPE_FP32", [-1, -1])]),
        ("ranged", [("x", "TYPE_FP32", [-1, -1])], [("y", "TYPE_FP32", [-1, -1])]),
        ("string", [("in", "TYPE_STRING", [-1])], [("out", "TYPE_STRING", [-1])]),
        ("passthrough_UINT8", [("in", "TYPE_UINT8", [-1, -1])], [("out", "TYPE_UINT8", [-1, -1])]),
        ("mapped", [("input_alias", "TYPE_FP32", [1, 10])], [("output_alias", "TYPE_FP32", [1, 10])]),
        ("bf16", [("x", "TYPE_INVALID", [1, 2])], [("y", "TYPE_FP32", [1, 2])]),
    ],
)
def test_model_config(client, model, inputs, outputs):
    config = client.get_model_config(model).config
    assert config.name == model
    assert config.platform == "OpenVINO"
    assert config.backend == "openvino"
    assert config.max_batch_size == 0  # no batch dimension split off: dims are the full shapes
    as_tuples = lambda tensors: [  # noqa: E731
        (t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors
    ]
    assert as_tuples(config.input) == inputs
    assert as_tuples(config.output) == outputs


def test_model_config_of_a_version(client):
    assert client.get_model_config("versions_all", "1").config.name == "versions_all"


@pytest.mark.parametrize(
    ("name", "version", "code", "message"),
    [
        ("no_such_model", "", grpc.StatusCode.NOT_FOUND, NAME_MISSING),
        ("dummy", "7", grpc.StatusCode.NOT_FOUND, VERSION_MISSING),
        ("broken", "", grpc.StatusCode.NOT_FOUND, VERSION_MISSING),
    ],
)
def test_model_config_errors(stub, name, version, code, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelConfig(service_pb2.ModelConfigRequest(name=name, version=version), timeout=10)
    assert info.value.code() == code
    assert info.value.details().startswith(message)


def _infer(stub, shape: list[int]) -> None:
    request = service_pb2.ModelInferRequest(model_name="statistics_probe")
    request.inputs.add(name="b", datatype="FP32", shape=shape)
    request.raw_input_contents.append(np.ones(shape, dtype=np.float32).tobytes())
    stub.ModelInfer(request, timeout=30)


def test_statistics_count_successes_and_failures(client, stub):
    before_ms = time.time() * 1000
    for _ in range(5):
        _infer(stub, [1, 10])
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            _infer(stub, [2, 10])
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    (stats,) = client.get_inference_statistics("statistics_probe").model_stats
    assert (stats.name, stats.version) == ("statistics_probe", "1")
    assert stats.inference_count == 5 and stats.execution_count == 5
    assert before_ms - 1000 <= stats.last_inference <= time.time() * 1000 + 1000
    infer = stats.inference_stats
    assert infer.success.count == 5 and infer.fail.count == 2
    for phase in (infer.queue, infer.compute_input, infer.compute_infer, infer.compute_output):
        assert phase.count == 5
    assert infer.compute_infer.ns > 0 and infer.success.ns > 0
    assert infer.success.ns >= infer.compute_input.ns + infer.compute_infer.ns + infer.compute_output.ns
    (batch,) = stats.batch_stats
    assert batch.batch_size == 1 and batch.compute_infer.count == 5


def test_statistics_of_every_model_and_of_one_version(client):
    everything = client.get_inference_statistics().model_stats
    listed = [(s.name, s.version) for s in everything]
    assert listed == sorted(listed, key=lambda item: (item[0], int(item[1])))
    assert ("dummy", "1") in listed
    assert [v for n, v in listed if n == "versions_all"] == ["1", "2", "3"]
    assert not any(n == "broken" for n, _ in listed)  # no available version: nothing to report
    assert [s.version for s in client.get_inference_statistics("versions_all", "2").model_stats] == ["2"]
    assert [s.version for s in client.get_inference_statistics("versions_all").model_stats] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [("no_such_model", "", NAME_MISSING), ("dummy", "9", VERSION_MISSING), ("versions_default", "1", "")],
)
def test_statistics_errors(client, name, version, message):
    with pytest.raises(InferenceServerException) as info:
        client.get_inference_statistics(name, version)
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert info.value.message().startswith(message or VERSION_MISSING)
