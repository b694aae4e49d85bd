"""In-process tests of `pyovms.Tensor` (OVMS's Python node tensor) and its request/response conversions."""

from __future__ import annotations

import ctypes
import pickle
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from pyovms import Tensor
from pyovms.errors import ServingError, Status
from pyovms.tensors.messages import InferInput, InferOutput
from pyovms.tensors.node_tensor import datatype_of, tensor_from_input, tensor_to_output

FORMATS = [
    ("?", "BOOL", np.bool_),
    ("B", "UINT8", np.uint8),
    ("H", "UINT16", np.uint16),
    ("I", "UINT32", np.uint32),
    ("Q", "UINT64", np.uint64),
    ("b", "INT8", np.int8),
    ("h", "INT16", np.int16),
    ("i", "INT32", np.int32),
    ("q", "INT64", np.int64),
    ("e", "FP16", np.float16),
    ("f", "FP32", np.float32),
    ("d", "FP64", np.float64),
]


def _contents(**fields) -> SimpleNamespace:
    """A stand-in for the protobuf `InferTensorContents`: every `*_contents` field, as lists."""
    names = ("bool", "int", "int64", "uint", "uint64", "fp32", "fp64", "bytes")
    return SimpleNamespace(**{f"{n}_contents": [] for n in names} | fields)


def _error(tensor: InferInput) -> ServingError:
    with pytest.raises(ServingError) as info:
        tensor_from_input(tensor)
    return info.value


# Tensor: formats and datatypes


@pytest.mark.parametrize(("format", "datatype", "dtype"), FORMATS)
def test_buffer_format_maps_to_datatype(format, datatype, dtype):
    buffer = np.zeros(4, np.float16) if format == "e" else memoryview(bytes(16)).cast(format)
    tensor = Tensor("x", buffer)
    assert tensor.datatype == datatype
    assert tensor.data.format == format
    assert np.array(tensor).dtype == dtype
    assert tensor.size == 16 if format != "e" else tensor.size == 8


@pytest.mark.parametrize(("format", "datatype", "dtype"), FORMATS)
def test_numpy_dtypes_map_to_datatypes(format, datatype, dtype):
    tensor = Tensor("x", np.zeros((2, 3), dtype))
    assert (tensor.datatype, tensor.shape, tensor.size) == (datatype, (2, 3), 6 * np.dtype(dtype).itemsize)


@pytest.mark.parametrize(
    ("format", "itemsize", "datatype"),
    [
        ("<f", 4, "FP32"),
        ("=i", 4, "INT32"),
        ("@q", 8, "INT64"),
        ("<e", 2, "FP16"),
        ("!B", 1, "UINT8"),
        (">b", 1, "INT8"),
        (">?", 1, "BOOL"),
        ("l", 8, "INT64"),
        ("l", 4, "INT32"),
        ("<l", 4, "INT32"),
        ("L", 8, "UINT64"),
        ("L", 4, "UINT32"),
        ("n", 8, "INT64"),
        ("N", 8, "UINT64"),
        (">f", 4, ">f"),
        ("!i", 4, "!i"),
        ("7w", 28, "7w"),
        ("9s", 9, "9s"),
        ("l", 16, "l"),
    ],
)
def test_datatype_of_format_prefixes_and_native_sizes(format, itemsize, datatype):
    assert datatype_of(format, itemsize) == datatype


def test_int64_is_int64_not_int32():
    assert Tensor("x", np.arange(3, dtype=np.int64)).datatype == "INT64"
    assert Tensor("x", np.arange(3, dtype=np.uint64)).datatype == "UINT64"
    assert Tensor("x", (ctypes.c_long * 3)(1, 2, 3)).datatype == "INT64"
    assert Tensor("x", np.arange(3, dtype=np.int32)).datatype == "INT32"


def test_unmappable_formats_become_the_datatype():
    assert Tensor("x", np.array(["abcdefg", "b"])).datatype == "7w"
    assert Tensor("x", np.array([b"abc"], dtype="S9")).datatype == "9s"
    big = Tensor("x", np.array([1, 2], dtype=">i4"))
    assert big.datatype == ">i"
    assert bytes(big) == b"\x00\x00\x00\x01\x00\x00\x00\x02"


# Tensor: the buffer


def test_bytes_become_a_read_only_uint8_tensor():
    tensor = Tensor("x", b"abc")
    assert (tensor.name, tensor.shape, tensor.datatype, tensor.size) == ("x", (3,), "UINT8", 3)
    assert isinstance(tensor.data, memoryview)
    assert (tensor.data.format, tensor.data.shape, tensor.data.readonly) == ("B", (3,), True)
    assert bytes(tensor) == b"abc"
    assert bytes(memoryview(tensor)) == b"abc"
    with pytest.raises(ValueError):
        tensor.view(np.ndarray)[0] = 1


def test_numpy_float32_round_trip_without_copy():
    source = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = Tensor("x", source)
    assert np.shares_memory(tensor, source)
    assert (tensor.shape, tensor.datatype, tensor.size) == ((2, 3), "FP32", 24)
    assert (tensor.data.format, tensor.data.shape) == ("f", (2, 3))
    back = np.array(tensor)
    assert type(back) is np.ndarray and back.dtype == np.float32 and back.shape == (2, 3)
    assert back.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert bytes(tensor) == source.tobytes()
    view = memoryview(tensor)
    assert (view.format, view.shape, view.nbytes) == ("f", (2, 3), 24)
    assert np.frombuffer(tensor, dtype=np.float32).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert struct.unpack("<6f", tensor) == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    assert Tensor("y", struct.pack("<2f", 1.5, -2.0)).tolist() == list(b"\x00\x00\xc0?\x00\x00\x00\xc0")


def test_non_contiguous_input_is_copied_once_to_c_order():
    source = np.arange(6, dtype=np.int16).reshape(2, 3).T
    tensor = Tensor("x", source)
    assert tensor.flags.c_contiguous and not np.shares_memory(tensor, source)
    assert tensor.shape == (3, 2)
    assert bytes(tensor) == np.ascontiguousarray(source).tobytes()
    strided = Tensor("x", memoryview(bytes(range(8)))[::2])
    assert bytes(strided) == b"\x00\x02\x04\x06"


def test_overrides_relabel_without_touching_the_buffer():
    tensor = Tensor("s", b"abcdef", shape=[2, 3], datatype="my_string")
    assert (tensor.shape, tensor.datatype, tensor.size) == ((2, 3), "my_string", 6)
    assert (tensor.data.format, tensor.data.shape) == ("B", (6,))
    assert np.array(tensor).shape == (6,) and bytes(tensor) == b"abcdef"
    relabelled = Tensor("f", np.ones(4, np.float32), shape=(2, 2), datatype="INT32")
    assert (relabelled.shape, relabelled.datatype) == ((2, 2), "INT32")
    assert np.array(relabelled).dtype == np.float32 and np.array(relabelled).shape == (4,)
    assert bytes(relabelled) == np.ones(4, np.float32).tobytes()


def test_tensor_from_tensor_views_the_same_buffer():
    source = Tensor("a", np.arange(4, dtype=np.uint16).reshape(2, 2))
    copy = Tensor("b", source)
    assert (copy.name, copy.shape, copy.datatype, copy.size) == ("b", (2, 2), "UINT16", 8)
    assert np.shares_memory(copy, source) and bytes(copy) == bytes(source)
    # like OVMS, the new tensor reads the buffer, not the old labels
    custom = Tensor("c", Tensor("s", b"abcd", shape=(2,), datatype="BYTES"))
    assert (custom.shape, custom.datatype) == ((4,), "UINT8")
    relabelled = Tensor("d", source, shape=(4,), datatype="INT16")
    assert (relabelled.shape, relabelled.datatype, source.datatype) == ((4,), "INT16", "UINT16")


def test_numpy_operations_give_plain_arrays():
    tensor = Tensor("x", np.arange(6, dtype=np.float32).reshape(2, 3))
    for result in (tensor + 1, np.array(tensor) + 1, np.add(tensor, 1), tensor * tensor, np.concatenate([tensor])):
        assert type(result) is np.ndarray
    assert (tensor + 1).tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert type(tensor[0]) is np.ndarray and tensor[0].tolist() == [0.0, 1.0, 2.0]
    assert np.size(tensor) == 6 and tensor.size == 24
    assert type(np.asarray(tensor)) is np.ndarray and np.shares_memory(np.asarray(tensor), tensor)


def test_numpy_reductions_read_the_buffer_not_the_declared_shape():
    tensor = Tensor("x", bytes([1, 2, 3, 4, 5, 6]), shape=(2, 3), datatype="my")
    assert (tensor.mean(), np.mean(tensor), tensor.sum(), tensor.max()) == (3.5, 3.5, 21, 6)
    assert tensor.var() == pytest.approx(35 / 12) and tensor.std() == pytest.approx((35 / 12) ** 0.5)


def test_views_and_copies_keep_sane_labels():
    tensor = Tensor("x", b"abcdef", shape=(2, 3), datatype="my")
    assert (tensor.copy().name, tensor.copy().shape, tensor.copy().datatype) == ("x", (2, 3), "my")
    reshaped = tensor.reshape(3, 2)
    assert isinstance(reshaped, Tensor) and (reshaped.shape, reshaped.datatype) == ((3, 2), "UINT8")
    assert tensor.astype(np.float32).datatype == "FP32"


def test_pickle_keeps_name_shape_and_datatype():
    tensor = Tensor("x", b"abcd", shape=(2,), datatype="BYTES")
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(tensor, protocol=protocol))
        assert (type(back), back.name, back.shape, back.datatype, bytes(back)) == (Tensor, "x", (2,), "BYTES", b"abcd")


def test_repr_names_the_labels():
    tensor = Tensor("x", np.zeros((2, 3), np.float32))
    assert repr(tensor) == str(tensor) == "Tensor(name='x', shape=(2, 3), datatype='FP32', size=24)"


def test_objects_without_a_value_buffer_are_refused():
    with pytest.raises(TypeError):
        Tensor("x", [1, 2, 3])
    with pytest.raises(TypeError):
        Tensor("x", np.array([b"a"], dtype=object))


# tensor_from_input


def test_raw_fp32_input_is_a_typed_view():
    raw = np.arange(4, dtype="<f4").tobytes()
    tensor = tensor_from_input(InferInput("x", "FP32", (2, 2), raw=raw))
    assert (tensor.name, tensor.datatype, tensor.shape, tensor.size) == ("x", "FP32", (2, 2), 16)
    assert (tensor.data.format, tensor.data.shape, tensor.data.readonly) == ("f", (2, 2), True)
    assert np.array(tensor).tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert bytes(tensor) == raw


@pytest.mark.parametrize(("format", "datatype", "dtype"), FORMATS)
def test_raw_input_of_every_numeric_datatype(format, datatype, dtype):
    values = np.array([[1, 0, 1]], dtype=dtype)
    tensor = tensor_from_input(InferInput("x", datatype, (1, 3), raw=memoryview(values.tobytes())))
    assert (tensor.datatype, tensor.shape, tensor.data.format) == (datatype, (1, 3), format)
    assert np.array(tensor).dtype == dtype and np.array(tensor).tolist() == values.tolist()


def test_typed_contents_int32():
    contents = _contents(int_contents=[1, -2, 3, 4, 5, 6])
    tensor = tensor_from_input(InferInput("x", "INT32", (2, 3), contents=contents))
    assert (tensor.datatype, tensor.shape, tensor.data.format, tensor.size) == ("INT32", (2, 3), "i", 24)
    assert np.array(tensor).tolist() == [[1, -2, 3], [4, 5, 6]]


def test_typed_contents_are_cast_like_c_and_rest_arrays_pass():
    tensor = tensor_from_input(InferInput("x", "INT8", (3,), contents=_contents(int_contents=[300, -129, 5])))
    assert (tensor.datatype, np.array(tensor).tolist()) == ("INT8", [44, 127, 5])
    rest = tensor_from_input(InferInput("x", "FP64", (1, 2), contents=np.array([1.5, 2.5])))
    assert (rest.datatype, rest.shape, np.array(rest).tolist()) == ("FP64", (1, 2), [[1.5, 2.5]])
    assert tensor_from_input(
        InferInput("x", "BOOL", (2,), contents=_contents(bool_contents=[True, False]))
    ).tolist() == [
        True,
        False,
    ]


def test_bytes_contents_are_framed():
    contents = _contents(bytes_contents=[b"ab", b"", b"xyz"])
    tensor = tensor_from_input(InferInput("s", "BYTES", (3,), contents=contents))
    assert (tensor.datatype, tensor.shape, tensor.data.format, tensor.data.shape) == ("BYTES", (3,), "B", (17,))
    assert bytes(tensor) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x03\x00\x00\x00xyz"
    rest = tensor_from_input(InferInput("s", "BYTES", (1, 1), contents=np.array([b"hi"], dtype=object)))
    assert (rest.shape, bytes(rest)) == ((1, 1), b"\x02\x00\x00\x00hi")


@pytest.mark.parametrize("datatype", ["my_string", "BYTES"])
def test_raw_bytes_and_custom_datatypes_pass_as_is(datatype):
    tensor = tensor_from_input(InferInput("s", datatype, (2,), raw=b"hello!"))
    assert (tensor.datatype, tensor.shape, tensor.size) == (datatype, (2,), 6)
    assert (tensor.data.format, tensor.data.shape) == ("B", (6,))
    assert bytes(tensor) == b"hello!"


def test_custom_datatype_in_contents_is_refused():
    error = _error(InferInput("s", "my_string", (1,), contents=_contents(bytes_contents=[b"a"])))
    assert error.status is Status.INVALID_PRECISION
    assert error.message == (
        "Invalid input precision - Provided datatype is invalid, custom datatypes are allowed only when "
        "raw_input_contents is used.; input name: s"
    )


def test_wrong_raw_size_is_refused():
    error = _error(InferInput("x", "FP32", (2, 2), raw=bytes(12)))
    assert error.status is Status.INVALID_CONTENT_SIZE
    assert error.message == (
        "Invalid content size of tensor proto - Invalid Python tensor buffer size. Actual: 12; Expected: 16; "
        "input name: x"
    )


def test_missing_data_is_a_zero_size_buffer():
    error = _error(InferInput("x", "INT64", (1, 3)))
    assert error.message == (
        "Invalid content size of tensor proto - Invalid Python tensor buffer size. Actual: 0; Expected: 24; "
        "input name: x"
    )
    empty = tensor_from_input(InferInput("x", "INT64", (0, 3)))
    assert (empty.shape, empty.size, empty.datatype) == ((0, 3), 0, "INT64")


def test_wrong_value_count_is_refused():
    error = _error(InferInput("x", "FP32", (2, 3), contents=_contents(fp32_contents=[1.0] * 5)))
    assert error.status is Status.INVALID_VALUE_COUNT
    assert error.message == (
        "Invalid number of values in tensor proto container - Expected: 6 values; Actual: 5 values; input name: x"
    )


def test_fp16_has_no_contents_field():
    error = _error(InferInput("h", "FP16", (2,), contents=_contents(fp32_contents=[1.0, 2.0])))
    assert error.status is Status.INVALID_VALUE_COUNT
    assert error.message.endswith("Expected: 2 values; Actual: 0 values; input name: h")


def test_negative_dimensions_are_refused():
    error = _error(InferInput("x", "FP32", (1, -2), raw=b""))
    assert error.status is Status.INVALID_SHAPE
    assert error.message == (
        "Invalid input shape - Negative or zero dimension size is not acceptable: (1,-2); input name: x"
    )


def test_overflowing_shapes_are_refused():
    error = _error(InferInput("x", "FP64", (1 << 32, 1 << 30), raw=b""))
    assert error.status is Status.INVALID_CONTENT_SIZE
    assert error.message == (
        "Invalid content size of tensor proto - Provided shape and datatype declare too large buffer.; input name: x"
    )


# tensor_to_output


def test_numpy_tensor_becomes_a_raw_output():
    values = np.arange(6, dtype=np.int64).reshape(2, 3)
    output = tensor_to_output(Tensor("out", values))
    assert output == InferOutput("out", "INT64", (2, 3), values.tobytes())
    assert type(output.raw) is bytes
    assert output.as_numpy().tolist() == values.tolist()


def test_bytes_tensor_becomes_a_raw_output_with_its_labels():
    framed = b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"
    output = tensor_to_output(Tensor("s", framed, shape=(2,), datatype="BYTES"), "renamed")
    assert output == InferOutput("renamed", "BYTES", (2,), framed)
    assert output.as_numpy().tolist() == [b"a", b"bc"]
    assert tensor_to_output(Tensor("u", b"xy")) == InferOutput("u", "UINT8", (2,), b"xy")


def test_input_to_output_round_trip():
    contents = _contents(bytes_contents=[b"ab", b"c"])
    output = tensor_to_output(tensor_from_input(InferInput("s", "BYTES", (2, 1), contents=contents)))
    assert (output.name, output.datatype, output.shape) == ("s", "BYTES", (2, 1))
    assert output.as_numpy().tolist() == [[b"ab"], [b"c"]]
    raw = np.array([[1.5, 2.5]], dtype="<f2").tobytes()
    half = tensor_to_output(tensor_from_input(InferInput("h", "FP16", (1, 2), raw=raw)))
    assert half == InferOutput("h", "FP16", (1, 2), raw)
