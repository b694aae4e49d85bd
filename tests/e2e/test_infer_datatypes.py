"""ModelInfer datatypes end to end: raw and typed contents per datatype, response encoding, requested outputs,
BF16, BYTES (native and 2-D U8 strings) and scalars (spec §1.3-§1.5, §2.3, §2.4, §3.3)."""

from __future__ import annotations

import json
import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from ..conftest import NUMERIC_DATATYPES
from ..support import models
from ..support.server_process import ServerProcess

INVALID_ARGUMENT = "StatusCode.INVALID_ARGUMENT"

NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def _edge_values(datatype: str) -> np.ndarray:
    """Six or ten edge values of a datatype, shaped [2, n]."""
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if datatype == "BOOL":
        values = np.array([True, False, False, True, True, False], dtype=dtype)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        middle = [-1, 1] if dtype.kind == "i" else [1, int(info.max) // 2 + 1]
        values = np.array([info.min, info.max, 0, *middle, info.max - 1], dtype=dtype)
    else:
        info = np.finfo(dtype)
        special = [-np.inf, np.inf, -0.0, 0.0, np.nan]
        values = np.array([*special, info.max, info.min, info.tiny, info.smallest_subnormal, 1.5], dtype=dtype)
    return values.reshape(2, -1)


def _framed(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _unframed(buffer: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(buffer):
        (length,) = struct.unpack_from("<I", buffer, offset)
        items.append(buffer[offset + 4 : offset + 4 + length])
        offset += 4 + length
    assert offset == len(buffer), "output BYTES framing runs past the buffer"
    return items


def _raw_output(response: service_pb2.ModelInferResponse, name: str) -> tuple[str, list[int], bytes]:
    """(datatype, shape, raw bytes) of one output; checks it came in raw_output_contents, not in contents."""
    names = [output.name for output in response.outputs]
    assert len(response.raw_output_contents) == len(names)
    output = response.outputs[names.index(name)]
    assert not output.HasField("contents")
    return output.datatype, list(output.shape), response.raw_output_contents[names.index(name)]


def _tensor(name: str, datatype: str, shape: list[int], **contents) -> service_pb2.ModelInferRequest.InferInputTensor:
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    if contents:
        tensor.contents.CopyFrom(service_pb2.InferTensorContents(**contents))
    return tensor


def _request(model: str, *tensors, raw: list[bytes] | None = None, **fields) -> service_pb2.ModelInferRequest:
    return service_pb2.ModelInferRequest(model_name=model, inputs=list(tensors), raw_input_contents=raw or [], **fields)


def _stub_error(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    return info.value


def _client_error(client, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        client.infer(*args, **kwargs)
    return info.value


def _infer_input(name: str, datatype: str, array: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _assert_dummy_works(client) -> None:
    data = np.arange(10, dtype=np.float32).reshape(1, 10)
    result = client.infer("dummy", [_infer_input("b", "FP32", data)])
    np.testing.assert_array_equal(result.as_numpy("a"), data + 1)


@pytest.fixture
def then_dummy_works(client):
    """After an error test, a good request to `dummy` still works."""
    yield
    _assert_dummy_works(client)


# 1. Every numeric datatype through raw_input_contents (tritonclient's default), edge values included.


@pytest.mark.parametrize("datatype", NUMERIC_DATATYPES)
def test_numeric_raw_round_trip(client, datatype):
    data = _edge_values(datatype)
    result = client.infer(f"passthrough_{datatype}", [_infer_input("in", datatype, data)])
    output = result.get_output("out")
    assert output.datatype == datatype
    assert list(output.shape) == [2, data.shape[1]]
    out = result.as_numpy("out")
    assert out.dtype == data.dtype
    np.testing.assert_array_equal(out, data)
    assert out.tobytes() == data.tobytes()  # bit-exact: -0.0 keeps its sign, full 64-bit range kept
    assert not result.get_response().outputs[0].HasField("contents")


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_float_specials_keep_their_meaning(client, datatype):
    data = _edge_values(datatype)
    out = client.infer(f"passthrough_{datatype}", [_infer_input("in", datatype, data)]).as_numpy("out")
    flat = out.reshape(-1)
    assert flat[0] == -np.inf and flat[1] == np.inf
    assert flat[2] == 0 and np.signbit(flat[2]) and not np.signbit(flat[3])
    assert np.isnan(flat[4])
    assert flat[5] == np.finfo(data.dtype).max and flat[6] == np.finfo(data.dtype).min
    assert flat[8] == np.finfo(data.dtype).smallest_subnormal


@pytest.mark.parametrize("datatype", ["INT64", "UINT64"])
def test_full_64_bit_range_in_raw(stub, datatype):
    dtype = np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")
    info = np.iinfo(dtype)
    data = np.array([[info.min, info.max, 2**31, 2**32 + 7]], dtype=dtype)
    request = _request(f"passthrough_{datatype}", _tensor("in", datatype, [1, 4]), raw=[data.tobytes()])
    out_type, shape, raw = _raw_output(stub.ModelInfer(request), "out")
    assert (out_type, shape) == (datatype, [1, 4])
    assert np.frombuffer(raw, dtype=dtype).tolist() == data.reshape(-1).tolist()


# 2. Typed InferTensorContents, the field chosen by datatype (§1.3); narrow ints are C-cast.

CONTENTS_CASES = [
    ("BOOL", "bool_contents", [True, False, False, True], [True, False, False, True]),
    ("UINT8", "uint_contents", [0, 1, 255, 256, 300, 2**32 - 1], [0, 1, 255, 0, 44, 255]),
    ("UINT16", "uint_contents", [0, 65535, 65536, 70000, 2**32 - 1], [0, 65535, 0, 4464, 65535]),
    ("UINT32", "uint_contents", [0, 1, 2**31, 2**32 - 1], [0, 1, 2**31, 2**32 - 1]),
    ("UINT64", "uint64_contents", [0, 1, 2**63, 2**64 - 1], [0, 1, 2**63, 2**64 - 1]),
    ("INT8", "int_contents", [-128, 127, 128, 300, -129, -1], [-128, 127, -128, 44, 127, -1]),
    ("INT16", "int_contents", [-32768, 32767, 32768, 70000, -1], [-32768, 32767, -32768, 4464, -1]),
    ("INT32", "int_contents", [-(2**31), 2**31 - 1, 0, -1], [-(2**31), 2**31 - 1, 0, -1]),
    ("INT64", "int64_contents", [-(2**63), 2**63 - 1, 0, -1, 2**40], [-(2**63), 2**63 - 1, 0, -1, 2**40]),
    ("FP32", "fp32_contents", [-np.inf, np.inf, 3.5, -1.25e-38, 3.4028235e38], None),
    ("FP64", "fp64_contents", [-np.inf, np.inf, 3.5, 5e-324, 1.7976931348623157e308], None),
]


@pytest.mark.parametrize(
    ("datatype", "field", "values", "expected"), CONTENTS_CASES, ids=[c[0] for c in CONTENTS_CASES]
)
def test_numeric_typed_contents_round_trip(stub, datatype, field, values, expected):
    dtype = np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")
    if expected is None:
        expected = np.array(values, dtype=dtype).tolist()
    request = _request(f"passthrough_{datatype}", _tensor("in", datatype, [1, len(values)], **{field: values}))
    response = stub.ModelInfer(request)
    out_type, shape, raw = _raw_output(response, "out")
    assert (out_type, shape) == (datatype, [1, len(values)])
    assert np.frombuffer(raw, dtype=dtype).tolist() == expected


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_float_contents_keep_negative_zero_and_nan(stub, datatype):
    field = "fp32_contents" if datatype == "FP32" else "fp64_contents"
    request = _request(f"passthrough_{datatype}", _tensor("in", datatype, [1, 2], **{field: [-0.0, float("nan")]}))
    _, _, raw = _raw_output(stub.ModelInfer(request), "out")
    out = np.frombuffer(raw, dtype=np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<"))
    assert out[0] == 0 and np.signbit(out[0])
    assert np.isnan(out[1])


@pytest.mark.parametrize(
    "contents",
    [{}, {"fp32_contents": [1.0, 2.0]}, {"int_contents": [1, 2]}, {"bytes_contents": [b"\x00<", b"\x00@"]}],
    ids=["empty", "fp32", "int", "bytes"],
)
def test_fp16_in_contents_is_a_value_count_error(stub, then_dummy_works, contents):
    tensor = _tensor("in", "FP16", [1, 2])
    tensor.contents.SetInParent()  # present even when empty
    tensor.contents.MergeFrom(service_pb2.InferTensorContents(**contents))
    error = _stub_error(stub, _request("passthrough_FP16", tensor))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "Invalid number of values in tensor proto container - Expected: 2 values; Actual: 0 values; input name: in"
    )


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [("INT64", "int_contents", [1, 2]), ("UINT64", "uint_contents", [1, 2]), ("FP64", "fp32_contents", [1.0, 2.0])],
)
def test_values_in_the_wrong_contents_field_are_not_counted(stub, then_dummy_works, datatype, field, values):
    error = _stub_error(stub, _request(f"passthrough_{datatype}", _tensor("in", datatype, [1, 2], **{field: values})))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "Invalid number of values in tensor proto container - Expected: 2 values; Actual: 0 values; input name: in"
    )


# 3. Response encoding: raw_output_contents only, outputs sorted by name, id/name/version echoed.

THREE_OUTPUTS = ["negated", "plus_one", "times_two"]
X = [1.0, -2.0, 0.5, 4.0]
EXPECTED_THREE = {
    "negated": [-v for v in X],
    "plus_one": [v + 1 for v in X],
    "times_two": [v * 2 for v in X],
}


@pytest.mark.parametrize("encoding", ["raw", "contents"])
@pytest.mark.parametrize(("request_id", "version"), [("req-42", ""), ("", "1"), ("zażółć ✓", "")])
def test_response_envelope(stub, encoding, request_id, version):
    if encoding == "raw":
        request = _request(
            "three_outputs",
            _tensor("x", "FP32", [1, 4]),
            raw=[np.array(X, dtype="<f4").tobytes()],
            id=request_id,
            model_version=version,
        )
    else:
        request = _request(
            "three_outputs", _tensor("x", "FP32", [1, 4], fp32_contents=X), id=request_id, model_version=version
        )
    response = stub.ModelInfer(request)
    assert response.model_name == "three_outputs"
    assert response.model_version == "1"
    assert response.id == request_id
    assert [output.name for output in response.outputs] == THREE_OUTPUTS
    assert len(response.raw_output_contents) == 3
    assert len(response.parameters) == 0
    for name in THREE_OUTPUTS:
        datatype, shape, raw = _raw_output(response, name)
        assert (datatype, shape) == ("FP32", [1, 4])
        assert np.frombuffer(raw, dtype="<f4").tolist() == EXPECTED_THREE[name]


def test_response_envelope_through_tritonclient(client):
    data = np.array([X], dtype=np.float32)
    result = client.infer("three_outputs", [_infer_input("x", "FP32", data)], request_id="abc")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("three_outputs", "1", "abc")
    assert [output.name for output in response.outputs] == THREE_OUTPUTS
    assert all(not output.HasField("contents") for output in response.outputs)
    np.testing.assert_array_equal(result.as_numpy("times_two"), data * 2)


# 4. Requested outputs are honoured (policy), still sorted; unknown ones are an error.


@pytest.mark.parametrize(
    ("requested", "returned"),
    [
        ([], THREE_OUTPUTS),
        (["times_two"], ["times_two"]),
        (["times_two", "negated"], ["negated", "times_two"]),
        (["plus_one", "times_two", "negated"], THREE_OUTPUTS),
    ],
)
def test_requested_outputs(client, requested, returned):
    data = np.array([X], dtype=np.float32)
    outputs = [grpcclient.InferRequestedOutput(name) for name in requested] or None
    result = client.infer("three_outputs", [_infer_input("x", "FP32", data)], outputs=outputs)
    response = result.get_response()
    assert [output.name for output in response.outputs] == returned
    assert len(response.raw_output_contents) == len(returned)
    for name in returned:
        assert result.as_numpy(name).reshape(-1).tolist() == EXPECTED_THREE[name]


@pytest.mark.parametrize("requested", [["nope"], ["plus_one", "nope"]])
def test_unknown_requested_output(client, then_dummy_works, requested):
    data = np.array([X], dtype=np.float32)
    outputs = [grpcclient.InferRequestedOutput(name) for name in requested]
    error = _client_error(client, "three_outputs", [_infer_input("x", "FP32", data)], outputs=outputs)
    assert error.status() == INVALID_ARGUMENT
    assert error.message().startswith("Missing output with specific name")
    assert "nope" in error.message()


# 5. BF16: never accepted; metadata says INVALID.


@pytest.mark.parametrize(
    ("tensor", "raw"),
    [
        (_tensor("x", "BF16", [1, 2]), [b"\x80\x3f\x00\x40"]),
        (_tensor("x", "BF16", [1, 2], fp32_contents=[1.0, 2.0]), None),
        (_tensor("x", "BF16", [1, 2], uint_contents=[0x3F80, 0x4000]), None),
        (_tensor("x", "FP32", [1, 2]), [np.array([1, 2], dtype="<f4").tobytes()]),
    ],
    ids=["bf16-raw", "bf16-fp32-contents", "bf16-uint-contents", "fp32-raw"],
)
def test_bf16_input_is_rejected(stub, then_dummy_works, tensor, raw):
    error = _stub_error(stub, _request("bf16", tensor, raw=raw))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = error.details()
    assert message.startswith("Invalid input precision - ")
    assert f"Actual: {tensor.datatype}" in message
    assert message.count("input name: x") == 1


def test_bf16_model_metadata_says_invalid(client):
    metadata = client.get_model_metadata("bf16")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("x", "INVALID", [1, 2])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("y", "FP32", [1, 2])]


# 6. BYTES to a native OpenVINO string model, in bytes_contents and in raw (u32 LE length prefix).

STRINGS = [b"", b"hello", "zażółć gęślą jaźń ✓".encode(), b"\x00\xff\x01binary\x80", b"x" * 1000, b""]
STRINGS_TRAILING_NUL = [b"abc\x00", b"\x00", b"\x00\x00\x00", b"mid\x00dle"]


TRAILING_NUL_LIMIT = pytest.mark.xfail(
    strict=True,
    reason="OpenVINO's Python API reads string tensors as numpy 'S' arrays, which drop trailing NUL bytes",
)


@pytest.mark.parametrize(
    "items",
    [STRINGS, pytest.param(STRINGS_TRAILING_NUL, marks=TRAILING_NUL_LIMIT), [b"single"]],
    ids=["mixed", "nul", "one"],
)
@pytest.mark.parametrize("encoding", ["raw", "contents"])
def test_native_strings_round_trip(stub, items, encoding):
    if encoding == "raw":
        request = _request("string", _tensor("in", "BYTES", [len(items)]), raw=[_framed(items)])
    else:
        tensor = _tensor("in", "BYTES", [len(items)])
        tensor.contents.bytes_contents.extend(items)
        request = _request("string", tensor)
    datatype, shape, raw = _raw_output(stub.ModelInfer(request), "out")
    assert (datatype, shape) == ("BYTES", [len(items)])
    assert _unframed(raw) == items


def test_native_strings_through_tritonclient(client):
    data = np.array(STRINGS, dtype=np.object_)
    result = client.infer("string", [_infer_input("in", "BYTES", data)])
    output = result.get_output("out")
    assert (output.datatype, list(output.shape)) == ("BYTES", [len(STRINGS)])
    assert result.as_numpy("out").tolist() == STRINGS
    assert result.as_numpy("out")[2].decode() == "zażółć gęślą jaźń ✓"


@pytest.mark.parametrize("encoding", ["raw", "contents"])
def test_all_empty_strings_are_not_stale_data(stub, encoding):
    """Only empty strings after a non-empty request: the answer is empty strings, nothing left from before."""
    for items in ([b"leak"], [b""], [b"previous", b"data"], [b"", b""], [b"x" * 64], [b"", b"", b""]):
        tensor = _tensor("in", "BYTES", [len(items)])
        if encoding == "raw":
            request = _request("string", tensor, raw=[_framed(items)])
        else:
            tensor.contents.bytes_contents.extend(items)
            request = _request("string", tensor)
        datatype, shape, raw = _raw_output(stub.ModelInfer(request), "out")
        assert (datatype, shape) == ("BYTES", [len(items)])
        assert _unframed(raw) == items


@pytest.fixture
def own_server(tmp_path_factory):
    """A fresh server with only the `string` model, for a request that has brought the server down."""
    root = tmp_path_factory.mktemp("own_repository")
    models.build_passthrough(root / "string" / "1", models.OV_TYPES["BYTES"], [-1])
    config = root / "config.json"
    config.write_text(json.dumps({"model_config_list": [{"config": {"name": "string", "base_path": "string"}}]}))
    process = ServerProcess(["--config_path", str(config)], tmp_path_factory.mktemp("own_logs") / "server.log")
    yield process
    process.stop()


@pytest.mark.parametrize("encoding", ["raw", "contents"])
def test_zero_strings(own_server, encoding):
    """Shape [0] is allowed (§2.3: zero dimensions are accepted): zero strings in, zero strings out."""
    tensor = _tensor("in", "BYTES", [0])
    if encoding == "raw":
        request = _request("string", tensor, raw=[b""])
    else:
        tensor.contents.SetInParent()
        request = _request("string", tensor)
    try:
        response = own_server.stub.ModelInfer(request, timeout=30)
    finally:
        assert own_server.process.poll() is None, f"server died: exit code {own_server.process.returncode}"
    datatype, shape, raw = _raw_output(response, "out")
    assert (datatype, shape, raw) == ("BYTES", [0], b"")
    again = own_server.stub.ModelInfer(_request("string", _tensor("in", "BYTES", [1]), raw=[_framed([b"ok"])]))
    assert _unframed(_raw_output(again, "out")[2]) == [b"ok"]


@pytest.mark.parametrize(
    ("model", "tensor", "out_name", "out_type"),
    [
        ("passthrough_FP32", _tensor("in", "FP32", [0, 3]), "out", "FP32"),
        ("string_2d", _tensor("s", "BYTES", [0]), "out_string", "BYTES"),
    ],
    ids=["fp32", "string_2d"],
)
def test_zero_element_tensors(stub, model, tensor, out_name, out_type):
    response = stub.ModelInfer(_request(model, tensor, raw=[b""]))
    assert _raw_output(response, out_name) == (out_type, list(tensor.shape), b"")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x05\x00\x00\x00abc",  # length prefix runs past the end
        _framed([b"ab", b"cd"]) + b"\x01\x00",  # trailing bytes shorter than a prefix
        _framed([b"ab"]) + b"\x09\x00\x00\x00x",  # a second element cut short
        b"\x02\x00",  # not even one prefix
    ],
    ids=["past-end", "trailing", "second-cut", "short-prefix"],
)
@pytest.mark.parametrize(("model", "name"), [("string", "in"), ("string_2d", "s")])
def test_malformed_bytes_framing(stub, then_dummy_works, raw, model, name):
    error = _stub_error(stub, _request(model, _tensor(name, "BYTES", [1]), raw=[raw]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Inputs inside buffer does not match expected format.")


@pytest.mark.parametrize("encoding", ["raw", "contents"])
def test_bytes_element_count_differs_from_shape(stub, then_dummy_works, encoding):
    items = [b"a", b"bb", b"ccc"]
    tensor = _tensor("in", "BYTES", [2])
    if encoding == "raw":
        request = _request("string", tensor, raw=[_framed(items)])
    else:
        tensor.contents.bytes_contents.extend(items)
        request = _request("string", tensor)
    error = _stub_error(stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "Invalid number of values in tensor proto container - Expected: 2 values; Actual: 3 values; input name: in"
    )


# 7. BYTES [N] to a 2-D U8 input: NUL-padded rows [N, maxlen+1]; `*_string` outputs come back as BYTES [N].


@pytest.mark.parametrize(
    "items",
    [[b"abcd", b"ab", b""], [b"x" * 300], ["zażółć".encode(), b"\xff\xfe"], [b"", b""]],
    ids=["mixed", "long", "utf8", "empty"],
)
def test_string_2d_round_trip(client, items):
    data = np.array(items, dtype=np.object_)
    result = client.infer("string_2d", [_infer_input("s", "BYTES", data)])
    output = result.get_output("out_string")
    assert (output.datatype, list(output.shape)) == ("BYTES", [len(items)])
    assert result.as_numpy("out_string").tolist() == items


def test_string_2d_in_bytes_contents(stub):
    tensor = _tensor("s", "BYTES", [2])
    tensor.contents.bytes_contents.extend([b"abcd", b"ab"])
    datatype, shape, raw = _raw_output(stub.ModelInfer(_request("string_2d", tensor)), "out_string")
    assert (datatype, shape) == ("BYTES", [2])
    assert _unframed(raw) == [b"abcd", b"ab"]


def test_string_2d_output_rows_cut_at_first_nul(client):
    rows = np.array([[97, 98, 0, 99, 100], [101, 101, 101, 101, 101], [0, 102, 0, 0, 0]], dtype=np.uint8)
    result = client.infer("string_2d", [_infer_input("s", "UINT8", rows)])
    assert list(result.get_output("out_string").shape) == [3]
    assert result.as_numpy("out_string").tolist() == [b"ab", b"eeeee", b""]


def test_string_2d_fixed_accepts_width_10(client):
    items = [b"123456789"]  # 9 bytes + NUL = the model's width 10
    result = client.infer("string_2d_fixed", [_infer_input("s", "BYTES", np.array(items, dtype=np.object_))])
    assert result.as_numpy("out_string").tolist() == items


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([b"0123456789"], "Expected batch size: 1; got: 1; Expected max null terminated string length: 10; got: 11"),
        ([b"abcde", b"a"], "Expected batch size: 1; got: 2; Expected max null terminated string length: 10; got: 6"),
        ([b"12345678"], "Expected batch size: 1; got: 1; Expected max null terminated string length: 10; got: 9"),
        ([b""], "Expected batch size: 1; got: 1; Expected max null terminated string length: 10; got: 1"),
    ],
    ids=["too-long", "two-strings", "too-short", "empty"],
)
def test_string_2d_fixed_shape_errors(client, then_dummy_works, items, expected):
    data = np.array(items, dtype=np.object_)
    error = _client_error(client, "string_2d_fixed", [_infer_input("s", "BYTES", data)])
    assert error.status() == INVALID_ARGUMENT
    assert error.message().startswith(f"Invalid input shape - {expected}")
    assert error.message().count("input name: s") == 1


def test_string_2d_needs_a_1d_request(stub, then_dummy_works):
    error = _stub_error(stub, _request("string_2d", _tensor("s", "BYTES", [1, 1]), raw=[_framed([b"ab"])]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Invalid number of shape dimensions")


# 8. BYTES to a numeric (non-string, non-image) input: INVALID_ARGUMENT naming the input, never UNKNOWN.


@pytest.mark.parametrize(
    ("model", "name", "shape"),
    [
        ("dummy", "b", [1, 10]),
        ("passthrough_FP32", "in", [1, 2]),
        ("passthrough_INT64", "in", [2, 1]),
        ("scalar", "x", []),
    ],
)
def test_bytes_to_numeric_input(client, then_dummy_works, model, name, shape):
    data = np.array([b"1"] * int(np.prod(shape)), dtype=np.object_).reshape(shape)
    error = _client_error(client, model, [_infer_input(name, "BYTES", data)])
    assert error.status() == INVALID_ARGUMENT
    assert f"input name: {name}" in error.message()
    assert error.message().count("input name:") == 1
    assert "Unknown error" not in error.message()


def test_bytes_contents_to_numeric_input(stub, then_dummy_works):
    tensor = _tensor("b", "BYTES", [1, 10])
    tensor.contents.bytes_contents.extend([b"1"] * 10)
    error = _stub_error(stub, _request("dummy", tensor))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input name: b" in error.details()


# 9. Scalars: shape [] in and out.


def test_scalar_raw_round_trip(client):
    result = client.infer("scalar", [_infer_input("x", "FP32", np.array(3.5, dtype=np.float32))])
    output = result.get_output("y")
    assert (output.datatype, list(output.shape)) == ("FP32", [])
    out = result.as_numpy("y")
    assert out.shape == () and out == np.float32(4.5)


@pytest.mark.parametrize("encoding", ["raw", "contents"])
def test_scalar_stub_round_trip(stub, encoding):
    if encoding == "raw":
        request = _request("scalar", _tensor("x", "FP32", []), raw=[np.array(-2.0, dtype="<f4").tobytes()])
    else:
        request = _request("scalar", _tensor("x", "FP32", [], fp32_contents=[-2.0]))
    datatype, shape, raw = _raw_output(stub.ModelInfer(request), "y")
    assert (datatype, shape) == ("FP32", [])
    assert np.frombuffer(raw, dtype="<f4").tolist() == [-1.0]


def test_scalar_model_rejects_rank_1(client, then_dummy_works):
    error = _client_error(client, "scalar", [_infer_input("x", "FP32", np.array([3.5], dtype=np.float32))])
    assert error.status() == INVALID_ARGUMENT
    assert error.message().startswith("Invalid number of shape dimensions - ")


# 10. The server keeps serving after all of the above.


def test_dummy_still_works_at_the_end(client):
    _assert_dummy_works(client)


def test_native_strings_keep_a_two_dimensional_shape(client):
    data = np.array([[b"a", b"bb", b""], [b"dddd", "ż".encode(), b"f"]], dtype=np.object_)
    tensor = grpcclient.InferInput("in", [2, 3], "BYTES")
    tensor.set_data_from_numpy(data)
    result = client.infer("string_matrix", [tensor])
    output = result.as_numpy("out")
    assert output.shape == (2, 3)
    assert output.tolist() == data.tolist()
