"""Request validation and servable lookup errors on the wire (spec §2.1-§2.4 and the compatibility policy).

Every model row of the §2.4 catalogue (binary-image, `auto` reload and DAG rows aside) is sent with the raw
grpcio stub; the gRPC code and the message are asserted: base message exactly as OVMS sends it, details naming
expected and actual values with the tensor named once (`input name: b`, not OVMS's doubled prefix). Rows whose
OVMS text has no details are matched on the base message (pyovms may add ` - <details>`). Nothing is UNKNOWN,
and after every error a good request to `dummy` is still served.
"""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
INTERNAL = grpc.StatusCode.INTERNAL

INT64_MAX = (1 << 63) - 1

# Base messages (the text before ` - `), as OVMS sends them.
INPUTS = "Invalid number of inputs"
MISSING = "Missing input with specific name"
BUFFERS = (
    "Passing buffers both in ModelInferRequest::InferInputTensor::contents and in "
    "ModelInferRequest::raw_input_contents is not allowed"
)
BOTH = (
    "Passing buffers both in InferInputTensor contents and in raw_input_contents is not allowed. "
    "Detected buffer in InferInputTensor contents for input:"
)
SHAPE = "Invalid input shape"
PRECISION = "Invalid input precision"
RANK = "Invalid number of shape dimensions"
BATCH = "Invalid input batch size"
CONTENT_SIZE = "Invalid content size of tensor proto"
VALUE_COUNT = "Invalid number of values in tensor proto container"
NEGATIVE = "Negative or zero dimension size is not acceptable:"
NAME_MISSING = "Model with requested name is not found"
VERSION_MISSING = "Model with requested version is not found"
VERSION_NOT_LOADED_YET = "Model with requested version is not loaded yet"
VERSION_FORMAT = "invalid model version format in request"
INFERENCE_ERROR = "Internal inference error"
BYTES_FORMAT = "Inputs inside buffer does not match expected format."


class Base(str):
    """An expected message given by its base only: the full text is `<base>` or `<base> - <details>`."""


def assert_message(actual: str, expected: str) -> None:
    assert "input name: input name:" not in actual, actual
    assert "Traceback" not in actual, actual
    if isinstance(expected, Base):
        base, _, details = actual.partition(" - ")
        assert base == expected, actual
        assert expected not in details, f"base message repeated in the details: {actual}"
    else:
        assert actual == expected


# Request builders --------------------------------------------------------------------------------------------------

EMPTY = object()
"""`contents=EMPTY`: an InferTensorContents message that is present but has no values."""


def tensor(
    name: str, datatype: str = "FP32", shape=(1, 10), contents: Any = None, **fields
) -> service_pb2.ModelInferRequest.InferInputTensor:
    t = service_pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    if contents is EMPTY:
        t.contents.SetInParent()
    for field, values in fields.items():
        getattr(t.contents, field).extend(values)
    return t


def request(model: str, *inputs, raw=None, version: str = "") -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name=model, model_version=version, inputs=list(inputs))
    if raw is not None:
        message.raw_input_contents.extend(raw)
    return message


def f32(n: int, start: float = 0.0) -> bytes:
    return (np.arange(n, dtype="<f4") + np.float32(start)).tobytes()


def framed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def dummy(*inputs, raw=None, version: str = "") -> service_pb2.ModelInferRequest:
    return request("dummy", *inputs, raw=raw, version=version)


def good_dummy(start: float = 0.0, version: str = "") -> service_pb2.ModelInferRequest:
    return dummy(tensor("b"), raw=[f32(10, start)], version=version)


def good_add_two() -> service_pb2.ModelInferRequest:
    return request("add_two", tensor("input1"), tensor("input2"), raw=[f32(10), f32(10, 100)])


def check_dummy_answer(response: service_pb2.ModelInferResponse, start: float = 0.0) -> None:
    assert response.model_name == "dummy"
    assert [o.name for o in response.outputs] == ["a"]
    assert list(response.outputs[0].shape) == [1, 10]
    values = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    np.testing.assert_array_equal(values, np.arange(10, dtype=np.float32) + np.float32(start) + 1)


def rpc_error(call, message) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(message, timeout=30)
    return info.value


def assert_dummy_served(stub) -> None:
    check_dummy_answer(stub.ModelInfer(good_dummy(), timeout=30))


def assert_error_then_served(stub, message, code: grpc.StatusCode, expected: str, call=None) -> None:
    """The bad request gets `code` and the expected message; a good request right after is still served."""
    error = rpc_error(call or stub.ModelInfer, message)
    assert error.code() == code, (error.code(), error.details())
    assert_message(error.details(), expected)
    assert_dummy_served(stub)


def case(case_id: str, message, code, expected):
    return pytest.param(message, code, expected, id=case_id)


# 1. Input count, names and raw/contents coherency (§2.3 steps 1-3) ----------------------------------------------

STRUCTURE_CASES = [
    case("zero-inputs", dummy(), INVALID, f"{INPUTS} - Expected: 1; Actual: 0"),
    case("zero-inputs-two-input-model", request("add_two"), INVALID, f"{INPUTS} - Expected: 2; Actual: 0"),
    case("zero-inputs-with-raw", dummy(raw=[f32(10)]), INVALID, f"{INPUTS} - Expected: 1; Actual: 0"),
    case(
        "extra-input",
        dummy(tensor("b"), tensor("c"), raw=[f32(10), f32(10)]),
        INVALID,
        f"{INPUTS} - Expected: 1; Actual: 2",
    ),
    case(
        "same-input-twice",
        dummy(tensor("b"), tensor("b"), raw=[f32(10), f32(10)]),
        INVALID,
        f"{INPUTS} - Expected: 1; Actual: 2",
    ),
    case(
        "missing-input",
        request("add_two", tensor("input1"), raw=[f32(10)]),
        INVALID,
        f"{INPUTS} - Expected: 2; Actual: 1",
    ),
    case(
        "count-before-raw-coherency",
        dummy(tensor("b"), tensor("c"), raw=[f32(10)]),
        INVALID,
        f"{INPUTS} - Expected: 1; Actual: 2",
    ),
    case("wrong-name", dummy(tensor("c"), raw=[f32(10)]), INVALID, f"{MISSING} - Required input: b"),
    case("name-is-case-sensitive", dummy(tensor("B"), raw=[f32(10)]), INVALID, f"{MISSING} - Required input: b"),
    case(
        "first-missing-in-name-order",
        request("add_two", tensor("y"), tensor("x"), raw=[f32(10), f32(10)]),
        INVALID,
        f"{MISSING} - Required input: input1",
    ),
    case(
        "duplicate-hides-other",
        request("add_two", tensor("input1"), tensor("input1"), raw=[f32(10), f32(10)]),
        INVALID,
        f"{MISSING} - Required input: input2",
    ),
    case(
        "raw-fewer-than-inputs",
        request("add_two", tensor("input1"), tensor("input2"), raw=[f32(10)]),
        INVALID,
        f"{BUFFERS} - Size of raw_input_contents: 1 is different than number of inputs: 2",
    ),
    case(
        "raw-more-than-inputs",
        request("add_two", tensor("input1"), tensor("input2"), raw=[f32(10), f32(10), f32(10)]),
        INVALID,
        f"{BUFFERS} - Size of raw_input_contents: 3 is different than number of inputs: 2",
    ),
    case(
        "raw-coherency-before-names",
        dummy(tensor("c"), raw=[f32(10), f32(10)]),
        INVALID,
        f"{BUFFERS} - Size of raw_input_contents: 2 is different than number of inputs: 1",
    ),
    case(
        "raw-and-contents",
        dummy(tensor("b", fp32_contents=[1.0] * 10), raw=[f32(10)]),
        INVALID,
        f"{BUFFERS} - {BOTH} b",
    ),
    case(
        "raw-and-empty-contents",
        dummy(tensor("b", contents=EMPTY), raw=[f32(10)]),
        INVALID,
        f"{BUFFERS} - {BOTH} b",
    ),
    case(
        "raw-and-contents-on-second-input",
        request("add_two", tensor("input1"), tensor("input2", contents=EMPTY), raw=[f32(10), f32(10)]),
        INVALID,
        f"{BUFFERS} - {BOTH} input2",
    ),
    case(
        "raw-and-contents-before-names",
        dummy(tensor("c", fp32_contents=[1.0] * 10), raw=[f32(10)]),
        INVALID,
        f"{BUFFERS} - {BOTH} c",
    ),
]


@pytest.mark.parametrize(("message", "code", "expected"), STRUCTURE_CASES)
def test_input_count_names_and_buffers(stub, message, code, expected):
    assert_error_then_served(stub, message, code, expected)


# 2. Per-input checks: negative dims, datatype, rank, batch, other dims (§2.3 steps 4-9) --------------------------

TENSOR_CASES = [
    # negative dimension (checked before the datatype)
    case(
        "negative-dim",
        dummy(tensor("b", shape=(1, -10)), raw=[f32(10)]),
        INVALID,
        f"{SHAPE} - {NEGATIVE} (1,-10); input name: b",
    ),
    case(
        "negative-batch-and-wrong-datatype",
        dummy(tensor("b", "INT64", shape=(-1, 10)), raw=[bytes(80)]),
        INVALID,
        f"{SHAPE} - {NEGATIVE} (-1,10); input name: b",
    ),
    case(
        "negative-dims-dynamic-model",
        request("dynamic", tensor("x", shape=(-5, -5)), raw=[b""]),
        INVALID,
        f"{SHAPE} - {NEGATIVE} (-5,-5); input name: x",
    ),
    # datatype (Expected: the OVMS internal precision name)
    case(
        "int64-to-fp32",
        dummy(tensor("b", "INT64"), raw=[bytes(80)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: INT64; input name: b",
    ),
    case(
        "fp64-to-fp32",
        dummy(tensor("b", "FP64"), raw=[bytes(80)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: FP64; input name: b",
    ),
    case(
        "fp16-to-fp32",
        dummy(tensor("b", "FP16"), raw=[bytes(20)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: FP16; input name: b",
    ),
    case(
        "unknown-datatype",
        dummy(tensor("b", "FLOAT32"), raw=[f32(10)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: FLOAT32; input name: b",
    ),
    case(
        "lowercase-datatype",
        dummy(tensor("b", "fp32"), raw=[f32(10)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: fp32; input name: b",
    ),
    case(
        "empty-datatype",
        dummy(tensor("b", ""), raw=[f32(10)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: ; input name: b",
    ),
    case(
        "bf16-raw",
        dummy(tensor("b", "BF16"), raw=[bytes(20)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: BF16; input name: b",
    ),
    case(
        "bf16-contents",
        dummy(tensor("b", "BF16", fp32_contents=[1.0] * 10)),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: BF16; input name: b",
    ),
    case(
        "bf16-to-bf16-model",
        request("bf16", tensor("x", "BF16", shape=(1, 2)), raw=[bytes(4)]),
        INVALID,
        f"{PRECISION} - Expected: BF16; Actual: BF16; input name: x",
    ),
    case(
        "fp32-to-int64-model",
        request("passthrough_INT64", tensor("in", shape=(1, 2)), raw=[f32(2)]),
        INVALID,
        f"{PRECISION} - Expected: I64; Actual: FP32; input name: in",
    ),
    case(
        "int8-to-uint8-model",
        request("passthrough_UINT8", tensor("in", "INT8", shape=(1, 2)), raw=[bytes(2)]),
        INVALID,
        f"{PRECISION} - Expected: U8; Actual: INT8; input name: in",
    ),
    case(
        "fp32-to-string-model",
        request("string", tensor("in", shape=(2,)), raw=[f32(2)]),
        INVALID,
        f"{PRECISION} - Expected: STRING; Actual: FP32; input name: in",
    ),
    case(
        "datatype-before-rank",
        dummy(tensor("b", "INT64", shape=(1, 10, 1)), raw=[bytes(80)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: INT64; input name: b",
    ),
    # rank
    case(
        "rank-3",
        dummy(tensor("b", shape=(1, 10, 1)), raw=[f32(10)]),
        INVALID,
        f"{RANK} - Expected: (1,10); Actual: (1,10,1); input name: b",
    ),
    case(
        "rank-1",
        dummy(tensor("b", shape=(10,)), raw=[f32(10)]),
        INVALID,
        f"{RANK} - Expected: (1,10); Actual: (10); input name: b",
    ),
    case(
        "rank-0",
        dummy(tensor("b", shape=()), raw=[f32(1)]),
        INVALID,
        f"{RANK} - Expected: (1,10); Actual: (); input name: b",
    ),
    case(
        "rank-before-batch",
        dummy(tensor("b", shape=(2, 10, 1)), raw=[f32(20)]),
        INVALID,
        f"{RANK} - Expected: (1,10); Actual: (2,10,1); input name: b",
    ),
    case(
        "rank-dynamic-model",
        request("dynamic", tensor("x", shape=(1, 2, 3)), raw=[f32(6)]),
        INVALID,
        f"{RANK} - Expected: (-1,-1); Actual: (1,2,3); input name: x",
    ),
    case(
        "rank-ranged-model",
        request("ranged", tensor("x", shape=(1, 2, 3)), raw=[f32(6)]),
        INVALID,
        f"{RANK} - Expected: ([1~4],[2~12]); Actual: (1,2,3); input name: x",
    ),
    # batch dimension
    case(
        "batch-2-for-1",
        dummy(tensor("b", shape=(2, 10)), raw=[f32(20)]),
        INVALID,
        f"{BATCH} - Expected: 1; Actual: 2; input name: b",
    ),
    case(
        "batch-0-for-1",
        dummy(tensor("b", shape=(0, 10)), raw=[b""]),
        INVALID,
        f"{BATCH} - Expected: 1; Actual: 0; input name: b",
    ),
    case(
        "batch-before-shape",
        dummy(tensor("b", shape=(2, 11)), raw=[f32(22)]),
        INVALID,
        f"{BATCH} - Expected: 1; Actual: 2; input name: b",
    ),
    case(
        "batch-fixed-config",
        request("batch_fixed", tensor("b", shape=(1, 10)), raw=[f32(10)]),
        INVALID,
        f"{BATCH} - Expected: 2; Actual: 1; input name: b",
    ),
    case(
        "batch-above-range",
        request("batch_range", tensor("b", shape=(4, 10)), raw=[f32(40)]),
        INVALID,
        f"{BATCH} - Expected: [1~3]; Actual: 4; input name: b",
    ),
    case(
        "batch-below-range",
        request("batch_range", tensor("b", shape=(0, 10)), raw=[b""]),
        INVALID,
        f"{BATCH} - Expected: [1~3]; Actual: 0; input name: b",
    ),
    case(
        "batch-outside-ranged-shape",
        request("ranged", tensor("x", shape=(5, 3)), raw=[f32(15)]),
        INVALID,
        f"{BATCH} - Expected: [1~4]; Actual: 5; input name: x",
    ),
    case(
        "batch-is-second-dim",
        request("batch_second", tensor("x", shape=(10, 2)), raw=[f32(20)]),
        INVALID,
        f"{BATCH} - Expected: 1; Actual: 2; input name: x",
    ),
    case(
        "batch-fixed-model-2x3",
        request("passthrough_fixed", tensor("in", shape=(3, 3)), raw=[f32(9)]),
        INVALID,
        f"{BATCH} - Expected: 2; Actual: 3; input name: in",
    ),
    case(
        "batch-on-second-input",
        request("add_two", tensor("input2", shape=(2, 10)), tensor("input1"), raw=[f32(20), f32(10)]),
        INVALID,
        f"{BATCH} - Expected: 1; Actual: 2; input name: input2",
    ),
    case(
        "inputs-checked-in-name-order",
        request("add_two", tensor("input2", shape=(2, 10)), tensor("input1", "INT32"), raw=[f32(20), bytes(40)]),
        INVALID,
        f"{PRECISION} - Expected: FP32; Actual: INT32; input name: input1",
    ),
    # other dimensions
    case(
        "dim-11-for-10",
        dummy(tensor("b", shape=(1, 11)), raw=[f32(11)]),
        INVALID,
        f"{SHAPE} - Expected: (1,10); Actual: (1,11); input name: b",
    ),
    case(
        "shape-before-content-size",
        dummy(tensor("b", shape=(1, 11)), raw=[f32(10)]),
        INVALID,
        f"{SHAPE} - Expected: (1,10); Actual: (1,11); input name: b",
    ),
    case(
        "dim-fixed-model-2x3",
        request("passthrough_fixed", tensor("in", shape=(2, 4)), raw=[f32(8)]),
        INVALID,
        f"{SHAPE} - Expected: (2,3); Actual: (2,4); input name: in",
    ),
    case(
        "dim-with-any-batch",
        request("batch_any", tensor("b", shape=(5, 11)), raw=[f32(55)]),
        INVALID,
        f"{SHAPE} - Expected: (-1,10); Actual: (5,11); input name: b",
    ),
    case(
        "dim-with-batch-range",
        request("batch_range", tensor("b", shape=(2, 11)), raw=[f32(22)]),
        INVALID,
        f"{SHAPE} - Expected: ([1~3],10); Actual: (2,11); input name: b",
    ),
    case(
        "dim-above-range",
        request("ranged", tensor("x", shape=(1, 13)), raw=[f32(13)]),
        INVALID,
        f"{SHAPE} - Expected: ([1~4],[2~12]); Actual: (1,13); input name: x",
    ),
    case(
        "dim-below-range",
        request("ranged", tensor("x", shape=(1, 1)), raw=[f32(1)]),
        INVALID,
        f"{SHAPE} - Expected: ([1~4],[2~12]); Actual: (1,1); input name: x",
    ),
    case(
        "dim-when-batch-is-second",
        request("batch_second", tensor("x", shape=(11, 1)), raw=[f32(11)]),
        INVALID,
        f"{SHAPE} - Expected: (10,1); Actual: (11,1); input name: x",
    ),
]


@pytest.mark.parametrize(("message", "code", "expected"), TENSOR_CASES)
def test_tensor_checks(stub, message, code, expected):
    assert_error_then_served(stub, message, code, expected)


# 3. Content size: overflow, raw bytes, typed value counts, BYTES (§2.3 step 10, §1.4) ----------------------------

CONTENT_CASES = [
    case(
        "overflow-2^40-squared",
        request("dynamic", tensor("x", shape=(1 << 40, 1 << 40)), raw=[f32(1)]),
        INVALID,
        f"{CONTENT_SIZE} - Shape dimensions overflow; input name: x",
    ),
    case(
        "overflow-in-bytes-only",
        request("dynamic", tensor("x", shape=(1 << 31, 1 << 31))),
        INVALID,
        f"{CONTENT_SIZE} - Shape dimensions overflow; input name: x",
    ),
    case(
        "overflow-int64-max-dims",
        request("dynamic", tensor("x", shape=(INT64_MAX, INT64_MAX), contents=EMPTY)),
        INVALID,
        f"{CONTENT_SIZE} - Shape dimensions overflow; input name: x",
    ),
    case(
        "huge-but-no-overflow-raw",
        request("dynamic", tensor("x", shape=(1 << 31, 1 << 30)), raw=[f32(1)]),
        INVALID,
        f"{CONTENT_SIZE} - Expected: {1 << 63} bytes; Actual: 4 bytes; input name: x",
    ),
    case(
        "huge-but-no-overflow-contents",
        request("dynamic", tensor("x", shape=(1 << 31, 1 << 30), fp32_contents=[1.0])),
        INVALID,
        f"{VALUE_COUNT} - Expected: {1 << 61} values; Actual: 1 values; input name: x",
    ),
    case(
        "raw-too-short",
        dummy(tensor("b"), raw=[f32(9)]),
        INVALID,
        f"{CONTENT_SIZE} - Expected: 40 bytes; Actual: 36 bytes; input name: b",
    ),
    case(
        "raw-too-long",
        dummy(tensor("b"), raw=[f32(11)]),
        INVALID,
        f"{CONTENT_SIZE} - Expected: 40 bytes; Actual: 44 bytes; input name: b",
    ),
    case(
        "raw-not-whole-elements",
        dummy(tensor("b"), raw=[f32(10)[:-1]]),
        INVALID,
        f"{CONTENT_SIZE} - Expected: 40 bytes; Actual: 39 bytes; input name: b",
    ),
    case(
        "raw-empty-buffer",
        dummy(tensor("b"), raw=[b""]),
        INVALID,
        f"{CONTENT_SIZE} - Expected: 40 bytes; Actual: 0 bytes; input name: b",
    ),
    case(
        "raw-fp16-size",
        request("passthrough_FP16", tensor("in", "FP16", shape=(1, 2)), raw=[bytes(8)]),
        INVALID,
        f"{CONTENT_SIZE} - Expected: 4 bytes; Actual: 8 bytes; input name: in",
    ),
    case(
        "raw-size-on-second-input",
        request("add_two", tensor("input1"), tensor("input2"), raw=[f32(10), f32(5)]),
        INVALID,
        f"{CONTENT_SIZE} - Expected: 40 bytes; Actual: 20 bytes; input name: input2",
    ),
    case(
        "contents-too-few",
        dummy(tensor("b", fp32_contents=[1.0] * 9)),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 9 values; input name: b",
    ),
    case(
        "contents-too-many",
        dummy(tensor("b", fp32_contents=[1.0] * 11)),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 11 values; input name: b",
    ),
    case(
        "contents-in-int-field",
        dummy(tensor("b", int_contents=list(range(10)))),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 0 values; input name: b",
    ),
    case(
        "contents-in-fp64-field",
        dummy(tensor("b", fp64_contents=[1.0] * 10)),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 0 values; input name: b",
    ),
    case(
        "contents-split-across-fields",
        dummy(tensor("b", fp32_contents=[1.0] * 5, fp64_contents=[1.0] * 5)),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 5 values; input name: b",
    ),
    case(
        "contents-empty-but-present",
        dummy(tensor("b", contents=EMPTY)),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 0 values; input name: b",
    ),
    case(
        "no-data-at-all",
        dummy(tensor("b")),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 0 values; input name: b",
    ),
    case(
        "contents-on-second-input",
        request("add_two", tensor("input1", fp32_contents=[1.0] * 10), tensor("input2", fp32_contents=[1.0] * 3)),
        INVALID,
        f"{VALUE_COUNT} - Expected: 10 values; Actual: 3 values; input name: input2",
    ),
    case(
        "fp16-in-contents",
        request("passthrough_FP16", tensor("in", "FP16", shape=(1, 2), fp32_contents=[1.0, 2.0])),
        INVALID,
        f"{VALUE_COUNT} - Expected: 2 values; Actual: 0 values; input name: in",
    ),
    case(
        "int8-in-int64-field",
        request("passthrough_INT8", tensor("in", "INT8", shape=(1, 2), int64_contents=[1, 2])),
        INVALID,
        f"{VALUE_COUNT} - Expected: 2 values; Actual: 0 values; input name: in",
    ),
    case(
        "uint64-in-uint-field",
        request("passthrough_UINT64", tensor("in", "UINT64", shape=(1, 2), uint_contents=[1, 2])),
        INVALID,
        f"{VALUE_COUNT} - Expected: 2 values; Actual: 0 values; input name: in",
    ),
    # BYTES to a native-string model
    case(
        "bytes-prefix-past-end",
        request("string", tensor("in", "BYTES", shape=(1,)), raw=[struct.pack("<I", 5) + b"ab"]),
        INVALID,
        Base(BYTES_FORMAT),
    ),
    case(
        "bytes-trailing-garbage",
        request("string", tensor("in", "BYTES", shape=(1,)), raw=[framed(b"ab") + b"\x01"]),
        INVALID,
        Base(BYTES_FORMAT),
    ),
    case(
        "bytes-raw-count",
        request("string", tensor("in", "BYTES", shape=(2,)), raw=[framed(b"a", b"b", b"c")]),
        INVALID,
        f"{VALUE_COUNT} - Expected: 2 values; Actual: 3 values; input name: in",
    ),
    case(
        "bytes-contents-count",
        request("string", tensor("in", "BYTES", shape=(2,), bytes_contents=[b"a"])),
        INVALID,
        f"{VALUE_COUNT} - Expected: 2 values; Actual: 1 values; input name: in",
    ),
    case(
        "string-2d-fixed-width",
        request("string_2d_fixed", tensor("s", "BYTES", shape=(2,), bytes_contents=[b"hello", b"world"])),
        INVALID,
        f"{SHAPE} - Expected batch size: 1; got: 2; Expected max null terminated string length: 10; got: 6; "
        "input name: s",
    ),
]


@pytest.mark.parametrize(("message", "code", "expected"), CONTENT_CASES)
def test_content_checks(stub, message, code, expected):
    assert_error_then_served(stub, message, code, expected)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(dummy(tensor("b", "BYTES", shape=(1,)), raw=[framed(b"x")]), id="raw"),
        pytest.param(dummy(tensor("b", "BYTES", shape=(1, 10), bytes_contents=[b"x"] * 10)), id="contents"),
    ],
)
def test_bytes_to_numeric_input_is_a_client_error(stub, message):
    """OVMS answers UNKNOWN `Unknown error` (NOT_IMPLEMENTED); the policy wants INVALID_ARGUMENT with the reason."""
    error = rpc_error(stub.ModelInfer, message)
    assert error.code() == INVALID, (error.code(), error.details())
    assert error.details() != "Unknown error"
    assert error.details().count("input name: b") == 1, error.details()
    assert_dummy_served(stub)


# 4. Servable and version resolution (§2.2): the version string is parsed before the name is looked up ---------

BAD_VERSIONS = [
    "abc",
    "01",
    "00",
    "1.0",
    "-0",
    "-01",
    "-",
    "+1",
    " 1",
    "1 ",
    "1\n",
    "0x1",
    "1e3",
    "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit(), not to OVMS
    str(INT64_MAX + 1),
    str(-INT64_MAX - 2),
    "9" * 30,
]


@pytest.mark.parametrize("model", ["dummy", "no_such_model", "broken"])
@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_bad_version_format(stub, model, version):
    assert_error_then_served(
        stub, request(model, tensor("b"), raw=[f32(10)], version=version), INVALID, Base(VERSION_FORMAT)
    )


def test_bad_version_format_before_input_validation(stub):
    assert_error_then_served(stub, dummy(tensor("zzz", "BF16"), version="v1"), INVALID, Base(VERSION_FORMAT))


LOOKUP_CASES = [
    case("unknown-name", request("no_such_model", tensor("b"), raw=[f32(10)]), NOT_FOUND, Base(NAME_MISSING)),
    case("unknown-name-version-1", request("no_such_model", version="1"), NOT_FOUND, Base(NAME_MISSING)),
    case("name-is-case-sensitive", request("Dummy", tensor("b"), raw=[f32(10)]), NOT_FOUND, Base(NAME_MISSING)),
    case("empty-name", request("", tensor("b"), raw=[f32(10)]), NOT_FOUND, Base(NAME_MISSING)),
    case("unknown-name-before-inputs", request("no_such_model"), NOT_FOUND, Base(NAME_MISSING)),
    case("unknown-version", good_dummy(version="2"), NOT_FOUND, Base(VERSION_MISSING)),
    case("negative-version", good_dummy(version="-1"), NOT_FOUND, Base(VERSION_MISSING)),
    case("int64-max-version", good_dummy(version=str(INT64_MAX)), NOT_FOUND, Base(VERSION_MISSING)),
    case("int64-min-version", good_dummy(version=str(-INT64_MAX - 1)), NOT_FOUND, Base(VERSION_MISSING)),
    case("version-before-inputs", dummy(version="7"), NOT_FOUND, Base(VERSION_MISSING)),
    case(
        "not-served-by-policy-1",
        request("versions_default", tensor("x", shape=(1, 1)), raw=[f32(1)], version="1"),
        NOT_FOUND,
        Base(VERSION_MISSING),
    ),
    case(
        "not-served-by-policy-2",
        request("versions_default", tensor("x", shape=(1, 1)), raw=[f32(1)], version="2"),
        NOT_FOUND,
        Base(VERSION_MISSING),
    ),
    case(
        "not-on-disk",
        request("versions_all", tensor("x", shape=(1, 1)), raw=[f32(1)], version="4"),
        NOT_FOUND,
        Base(VERSION_MISSING),
    ),
    case(
        "failed-model-default-version",
        request("broken", tensor("x", shape=(1, 1)), raw=[f32(1)]),
        NOT_FOUND,
        Base(VERSION_MISSING),
    ),
    case(
        "failed-model-version-0",
        request("broken", tensor("x", shape=(1, 1)), raw=[f32(1)], version="0"),
        NOT_FOUND,
        Base(VERSION_MISSING),
    ),
    case(
        "failed-model-unknown-version",
        request("broken", tensor("x", shape=(1, 1)), raw=[f32(1)], version="2"),
        NOT_FOUND,
        Base(VERSION_MISSING),
    ),
    case(
        "failed-model-explicit-version",
        request("broken", tensor("x", shape=(1, 1)), raw=[f32(1)], version="1"),
        UNAVAILABLE,
        Base(VERSION_NOT_LOADED_YET),
    ),
    case("missing-path-default", request("missing_path", tensor("b"), raw=[f32(10)]), NOT_FOUND, Base(VERSION_MISSING)),
    case(
        "missing-path-version-1",
        request("missing_path", tensor("b"), raw=[f32(10)], version="1"),
        NOT_FOUND,
        Base(VERSION_MISSING),
    ),
]


@pytest.mark.parametrize(("message", "code", "expected"), LOOKUP_CASES)
def test_servable_and_version_lookup(stub, message, code, expected):
    assert_error_then_served(stub, message, code, expected)


def test_failed_version_message_starts_with_base(stub):
    """`Model with requested version is not loaded yet` comes first; any reason follows ` - `."""
    error = rpc_error(stub.ModelInfer, request("broken", tensor("x", shape=(1, 1)), raw=[f32(1)], version="1"))
    assert error.code() == UNAVAILABLE
    assert error.details().startswith(VERSION_NOT_LOADED_YET)
    assert_dummy_served(stub)


@pytest.mark.parametrize(("version", "served"), [("", "3"), ("0", "3"), ("3", "3")])
def test_versions_that_resolve(stub, version, served):
    """Empty and `0` mean the default version for ModelInfer; the policy-served version works explicitly."""
    response = stub.ModelInfer(
        request("versions_default", tensor("x", shape=(1, 1)), raw=[f32(1, 1.0)], version=version), timeout=30
    )
    assert response.model_version == served
    assert np.frombuffer(response.raw_output_contents[0], "<f4").tolist() == [4.0]


def test_version_zero_is_default_for_dummy(stub):
    response = stub.ModelInfer(good_dummy(version="0"), timeout=30)
    assert response.model_version == "1"
    check_dummy_answer(response)


# 5. ModelReady and ModelMetadata (§2.5): `0` is not the default version there ------------------------------------

READY_AND_METADATA_CASES = [
    ("no_such_model", "", NOT_FOUND, NAME_MISSING),
    ("Dummy", "", NOT_FOUND, NAME_MISSING),
    ("no_such_model", "1", NOT_FOUND, NAME_MISSING),
    ("dummy", "0", NOT_FOUND, VERSION_MISSING),
    ("dummy", "2", NOT_FOUND, VERSION_MISSING),
    ("dummy", "-1", NOT_FOUND, VERSION_MISSING),
    ("dummy", "abc", INVALID, VERSION_FORMAT),
    ("dummy", "01", INVALID, VERSION_FORMAT),
    ("dummy", "-0", INVALID, VERSION_FORMAT),
    ("dummy", "1.0", INVALID, VERSION_FORMAT),
    ("dummy", str(INT64_MAX + 1), INVALID, VERSION_FORMAT),
    ("versions_default", "0", NOT_FOUND, VERSION_MISSING),
    ("versions_default", "1", NOT_FOUND, VERSION_MISSING),
    ("broken", "", NOT_FOUND, VERSION_MISSING),
    ("broken", "0", NOT_FOUND, VERSION_MISSING),
    ("missing_path", "", NOT_FOUND, VERSION_MISSING),
]


@pytest.mark.parametrize("method", ["ModelReady", "ModelMetadata"])
@pytest.mark.parametrize(
    ("name", "version", "code", "base"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]!r}") for row in READY_AND_METADATA_CASES],
)
def test_ready_and_metadata_errors(stub, method, name, version, code, base):
    message_type = service_pb2.ModelReadyRequest if method == "ModelReady" else service_pb2.ModelMetadataRequest
    call = getattr(stub, method)
    assert_error_then_served(stub, message_type(name=name, version=version), code, Base(base), call=call)


def test_ready_and_metadata_of_a_failed_version(stub):
    """A version that failed to load exists but is not AVAILABLE: ready=false; metadata is UNAVAILABLE."""
    assert stub.ModelReady(service_pb2.ModelReadyRequest(name="broken", version="1"), timeout=30).ready is False
    error = rpc_error(stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="broken", version="1"))
    assert error.code() == UNAVAILABLE
    assert_message(error.details(), Base(VERSION_NOT_LOADED_YET))
    assert stub.ModelReady(service_pb2.ModelReadyRequest(name="dummy", version="1"), timeout=30).ready is True
    assert_dummy_served(stub)


# 6. Runtime failures and undecodable requests ----------------------------------------------------------------------


def test_openvino_runtime_failure_is_internal_and_the_model_keeps_serving(stub):
    odd = request("odd_fails", tensor("x", shape=(3,)), raw=[f32(3)])
    error = rpc_error(stub.ModelInfer, odd)
    assert error.code() == INTERNAL, (error.code(), error.details())
    assert error.details().startswith(INFERENCE_ERROR), error.details()
    assert_message(error.details(), Base(INFERENCE_ERROR))
    even = stub.ModelInfer(request("odd_fails", tensor("x", shape=(4,)), raw=[f32(4)]), timeout=30)
    assert list(even.outputs[0].shape) == [2, 2]
    assert np.frombuffer(even.raw_output_contents[0], "<f4").tolist() == [0.0, 1.0, 2.0, 3.0]
    # the failure repeats, and the same model serves again afterwards
    assert rpc_error(stub.ModelInfer, odd).code() == INTERNAL
    assert stub.ModelInfer(request("odd_fails", tensor("x", shape=(2,)), raw=[f32(2)]), timeout=30).outputs
    assert_dummy_served(stub)


UNPARSABLE = [
    pytest.param(b"\xff\xff\xff", id="truncated-varint-tag"),
    pytest.param(b"\x0a\x05ab", id="length-past-end"),
    pytest.param(b"\x0a\x02\xff\xfe", id="invalid-utf8-name"),
    pytest.param(b"\x00", id="field-number-zero"),
    pytest.param(b"\x0f", id="invalid-wire-type"),
]


@pytest.mark.parametrize("method", ["ModelInfer", "ModelReady", "ModelMetadata"])
@pytest.mark.parametrize("data", UNPARSABLE)
def test_unparsable_request_bytes_are_invalid_argument(server, stub, method, data):
    call = server.channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
    with pytest.raises(grpc.RpcError) as info:
        call(data, timeout=30)
    error = info.value
    assert error.code() == INVALID, (error.code(), error.details())
    assert error.details(), "an empty message"
    assert error.details() != "Unknown error"
    assert "Traceback" not in error.details()
    assert_dummy_served(stub)


# 7. Many bad and good requests at once --------------------------------------------------------------------------


def test_fifty_mixed_requests_concurrently(stub):
    bad = [
        (dummy(), INVALID, f"{INPUTS} - Expected: 1; Actual: 0"),
        (dummy(tensor("c"), raw=[f32(10)]), INVALID, f"{MISSING} - Required input: b"),
        (
            dummy(tensor("b", "INT64"), raw=[bytes(80)]),
            INVALID,
            f"{PRECISION} - Expected: FP32; Actual: INT64; input name: b",
        ),
        (dummy(tensor("b", shape=(2, 10)), raw=[f32(20)]), INVALID, f"{BATCH} - Expected: 1; Actual: 2; input name: b"),
        (
            dummy(tensor("b"), raw=[f32(9)]),
            INVALID,
            f"{CONTENT_SIZE} - Expected: 40 bytes; Actual: 36 bytes; input name: b",
        ),
        (request("no_such_model", tensor("b"), raw=[f32(10)]), NOT_FOUND, Base(NAME_MISSING)),
        (good_dummy(version="abc"), INVALID, Base(VERSION_FORMAT)),
        (good_dummy(version="5"), NOT_FOUND, Base(VERSION_MISSING)),
        (request("odd_fails", tensor("x", shape=(3,)), raw=[f32(3)]), INTERNAL, Base(INFERENCE_ERROR)),
    ]
    jobs: list[tuple[str, Any, Any]] = []
    for i in range(50):
        if i % 2 == 0:
            jobs.append(("dummy", good_dummy(float(i)), float(i)))
        elif i % 7 == 0:
            jobs.append(("add_two", good_add_two(), None))
        else:
            message, code, text = bad[i % len(bad)]
            jobs.append(("bad", message, (code, text)))

    def run(job):
        try:
            return stub.ModelInfer(job[1], timeout=60), None
        except grpc.RpcError as error:
            return None, error

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, jobs))

    for (kind, _, expected), (response, error) in zip(jobs, results, strict=True):
        if kind == "dummy":
            assert error is None, error.details()
            check_dummy_answer(response, expected)
        elif kind == "add_two":
            assert error is None, error.details()
            total = np.frombuffer(response.raw_output_contents[0], "<f4")
            np.testing.assert_array_equal(total, np.arange(10, dtype=np.float32) * 2 + 100)
        else:
            code, message = expected
            assert response is None
            assert error.code() == code, (error.code(), error.details())
            assert_message(error.details(), message)
    assert_dummy_served(stub)


def test_dummy_still_served_after_everything(stub, client):
    assert_dummy_served(stub)
    assert client.is_model_ready("dummy")
