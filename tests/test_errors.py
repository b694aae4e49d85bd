"""Every model row of the OVMS error catalogue (spec §2.4) on the wire: gRPC code and full message.

Details name the tensor once (`input name: b`); an unknown servable is `Model with requested name is not found`;
nothing is UNKNOWN. After each error the next good request is served.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
INTERNAL = grpc.StatusCode.INTERNAL


def tensor(
    name: str, datatype: str = "FP32", shape=(1, 10), **contents
) -> service_pb2.ModelInferRequest.InferInputTensor:
    t = service_pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    for field, values in contents.items():
        getattr(t.contents, field).extend(values)
    return t


def request(model: str, *tensors, raw=None, version: str = "") -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name=model, model_version=version, inputs=list(tensors))
    if raw is not None:
        message.raw_input_contents.extend(raw)
    return message


def f32(n: int) -> bytes:
    return np.arange(n, dtype="<f4").tobytes()


def good_dummy() -> service_pb2.ModelInferRequest:
    return request("dummy", tensor("b"), raw=[f32(10)])


def call_error(stub, message) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(message, timeout=30)
    return info.value


def assert_then_served(stub, message, code, text):
    """The bad request gets `code` and exactly `text`; the next good request is answered."""
    error = call_error(stub, message)
    assert (error.code(), error.details()) == (code, text)
    response = stub.ModelInfer(good_dummy(), timeout=30)
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], "<f4"), np.arange(1, 11))


CASES = {
    "unknown-name": (
        request("nope", tensor("b"), raw=[f32(10)]),
        NOT_FOUND,
        "Model with requested name is not found - name: nope",
    ),
    "too-many-inputs": (
        request("dummy", tensor("b"), tensor("c"), raw=[f32(10), f32(10)]),
        INVALID,
        "Invalid number of inputs - Expected: 1; Actual: 2",
    ),
    "missing-input": (
        request("add_two", tensor("input1"), raw=[f32(10)]),
        INVALID,
        "Invalid number of inputs - Expected: 2; Actual: 1",
    ),
    "zero-inputs": (request("dummy"), INVALID, "Invalid number of inputs - Expected: 1; Actual: 0"),
    "wrong-name": (
        request("dummy", tensor("x"), raw=[f32(10)]),
        INVALID,
        "Missing input with specific name - Required input: b",
    ),
    "raw-count": (
        request("add_two", tensor("input1"), tensor("input2"), raw=[f32(10)]),
        INVALID,
        "Passing buffers both in ModelInferRequest::InferInputTensor::contents and in "
        "ModelInferRequest::raw_input_contents is not allowed - Size of raw_input_contents: 1 is different than "
        "number of inputs: 2",
    ),
    "raw-and-contents": (
        request("dummy", tensor("b", fp32_contents=[1.0] * 10), raw=[f32(10)]),
        INVALID,
        "Passing buffers both in ModelInferRequest::InferInputTensor::contents and in "
        "ModelInferRequest::raw_input_contents is not allowed - Passing buffers both in InferInputTensor contents "
        "and in raw_input_contents is not allowed. Detected buffer in InferInputTensor contents for input: b",
    ),
    "negative-dim": (
        request("dummy", tensor("b", shape=(1, -10)), raw=[f32(10)]),
        INVALID,
        "Invalid input shape - Negative or zero dimension size is not acceptable: (1,-10); input name: b",
    ),
    "wrong-datatype": (
        request("dummy", tensor("b", "INT64"), raw=[bytes(80)]),
        INVALID,
        "Invalid input precision - Expected: FP32; Actual: INT64; input name: b",
    ),
    "unknown-datatype": (
        request("dummy", tensor("b", "FLOAT"), raw=[f32(10)]),
        INVALID,
        "Invalid input precision - Expected: FP32; Actual: FLOAT; input name: b",
    ),
    "bf16": (
        request("dummy", tensor("b", "BF16"), raw=[bytes(20)]),
        INVALID,
        "Invalid input precision - Expected: FP32; Actual: BF16; input name: b",
    ),
    "wrong-rank": (
        request("dummy", tensor("b", shape=(1, 10, 1)), raw=[f32(10)]),
        INVALID,
        "Invalid number of shape dimensions - Expected: (1,10); Actual: (1,10,1); input name: b",
    ),
    "wrong-batch": (
        request("dummy", tensor("b", shape=(2, 10)), raw=[f32(20)]),
        INVALID,
        "Invalid input batch size - Expected: 1; Actual: 2; input name: b",
    ),
    "batch-outside-range": (
        request("batch_range", tensor("b", shape=(4, 10)), raw=[f32(40)]),
        INVALID,
        "Invalid input batch size - Expected: [1~3]; Actual: 4; input name: b",
    ),
    "batch-in-second-dim": (
        request("batch_second", tensor("x", shape=(10, 2)), raw=[f32(20)]),
        INVALID,
        "Invalid input batch size - Expected: 1; Actual: 2; input name: x",
    ),
    "wrong-dim": (
        request("dummy", tensor("b", shape=(1, 11)), raw=[f32(11)]),
        INVALID,
        "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: b",
    ),
    "dim-outside-range": (
        request("ranged", tensor("x", shape=(2, 13)), raw=[f32(26)]),
        INVALID,
        "Invalid input shape - Expected: ([1~4],[2~12]); Actual: (2,13); input name: x",
    ),
    "overflow": (
        request("dynamic", tensor("x", shape=(1 << 40, 1 << 40)), raw=[f32(1)]),
        INVALID,
        "Invalid content size of tensor proto - Shape dimensions overflow; input name: x",
    ),
    "raw-size": (
        request("dummy", tensor("b"), raw=[f32(9)]),
        INVALID,
        "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: b",
    ),
    "contents-count": (
        request("dummy", tensor("b", fp32_contents=[1.0] * 9)),
        INVALID,
        "Invalid number of values in tensor proto container - Expected: 10 values; Actual: 9 values; input name: b",
    ),
    "contents-wrong-field": (
        request("dummy", tensor("b", int_contents=[1] * 10)),
        INVALID,
        "Invalid number of values in tensor proto container - Expected: 10 values; Actual: 0 values; input name: b",
    ),
    "bytes-to-numeric": (
        request("dummy", tensor("b", "BYTES", shape=(1,), bytes_contents=[b"abc"])),
        INVALID,
        "Invalid input precision - Expected: FP32; Actual: BYTES; input name: b",
    ),
    "bytes-bad-framing": (
        request("string", tensor("in", "BYTES", shape=(1,)), raw=[b"\x09\x00\x00\x00abc"]),
        INVALID,
        "Inputs inside buffer does not match expected format. - input name: in",
    ),
    "bytes-count": (
        request("string", tensor("in", "BYTES", shape=(2,), bytes_contents=[b"a", b"b", b"c"])),
        INVALID,
        "Invalid number of values in tensor proto container - Expected: 2 values; Actual: 3 values; input name: in",
    ),
    "odd-fails-in-openvino": (
        request("odd_fails", tensor("x", shape=(3,)), raw=[f32(3)]),
        INTERNAL,
        None,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_error_row(stub, case):
    message, code, text = CASES[case]
    if text is None:  # the text comes from OpenVINO; check the base message only
        error = call_error(stub, message)
        assert error.code() == code and error.details().startswith("Internal inference error - ")
        assert stub.ModelInfer(good_dummy(), timeout=30).model_name == "dummy"
    else:
        assert_then_served(stub, message, code, text)


def test_runtime_failure_leaves_the_model_serving(stub):
    call_error(stub, request("odd_fails", tensor("x", shape=(3,)), raw=[f32(3)]))
    response = stub.ModelInfer(request("odd_fails", tensor("x", shape=(4,)), raw=[f32(4)]), timeout=30)
    assert list(response.outputs[0].shape) == [2, 2]


@pytest.mark.parametrize("version", ["abc", "01", "1.0", "-0", " 1", "99999999999999999999"])
@pytest.mark.parametrize("model", ["dummy", "no_such_model"])
def test_bad_version_string_is_checked_before_the_name(stub, model, version):
    message = request(model, tensor("b"), raw=[f32(10)], version=version)
    assert_then_served(stub, message, INVALID, f"invalid model version format in request - version: {version}")


@pytest.mark.parametrize(
    ("model", "version", "code", "text"),
    [
        ("dummy", "2", NOT_FOUND, "Model with requested version is not found - name: dummy; version: 2"),
        ("dummy", "-1", NOT_FOUND, "Model with requested version is not found - name: dummy; version: -1"),
        (
            "versions_default",
            "1",
            NOT_FOUND,
            "Model with requested version is not found - name: versions_default; version: 1",
        ),
        ("broken", "", NOT_FOUND, "Model with requested version is not found - name: broken; no version is available"),
        (
            "missing_path",
            "",
            NOT_FOUND,
            "Model with requested version is not found - name: missing_path; no version is available",
        ),
    ],
)
def test_version_lookup_errors(stub, model, version, code, text):
    assert_then_served(stub, request(model, tensor("b"), raw=[f32(10)], version=version), code, text)


def test_failed_version_is_unavailable_at_once(stub):
    error = call_error(stub, request("broken", tensor("x"), raw=[f32(10)], version="1"))
    assert error.code() == UNAVAILABLE
    assert error.details().startswith(
        "Model with requested version is not loaded yet - name: broken; version: 1; loading failed: "
    )


def test_unparsable_request_bytes(server, stub):
    call = server.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff\xff\xff\xff", timeout=10)
    assert info.value.code() == INVALID
    assert info.value.details().startswith("Request could not be parsed - ModelInferRequest: ")
    assert stub.ModelInfer(good_dummy(), timeout=30).model_name == "dummy"


@pytest.mark.parametrize(
    ("method", "version", "code", "text"),
    [
        ("ModelReady", "", NOT_FOUND, "Model with requested name is not found - name: nope"),
        ("ModelMetadata", "", NOT_FOUND, "Model with requested name is not found - name: nope"),
        ("ModelReady", "x", INVALID, "invalid model version format in request - version: x"),
        ("ModelMetadata", "01", INVALID, "invalid model version format in request - version: 01"),
    ],
)
def test_ready_and_metadata_errors_for_unknown_names(stub, method, version, code, text):
    message_type = getattr(service_pb2, f"{method}Request")
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, method)(message_type(name="nope", version=version), timeout=10)
    assert (info.value.code(), info.value.details()) == (code, text)


@pytest.mark.parametrize("method", ["ModelReady", "ModelMetadata"])
def test_version_zero_is_not_default_for_ready_and_metadata(stub, method):
    message_type = getattr(service_pb2, f"{method}Request")
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, method)(message_type(name="dummy", version="0"), timeout=10)
    assert info.value.code() == NOT_FOUND
    assert info.value.details() == "Model with requested version is not found - name: dummy; version: 0"


def test_version_zero_is_default_for_infer(stub):
    assert stub.ModelInfer(request("dummy", tensor("b"), raw=[f32(10)], version="0")).model_version == "1"


def test_mixed_bad_and_good_requests_concurrently(stub):
    bad = request("dummy", tensor("b", shape=(1, 11)), raw=[f32(11)])

    def one(index: int):
        if index % 2:
            return call_error(stub, bad).code()
        values = np.full((1, 10), index, dtype="<f4")
        response = stub.ModelInfer(request("dummy", tensor("b"), raw=[values.tobytes()]), timeout=30)
        return np.frombuffer(response.raw_output_contents[0], "<f4").tolist()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(50)))
    for index, result in enumerate(results):
        assert result == (INVALID if index % 2 else [index + 1.0] * 10)
