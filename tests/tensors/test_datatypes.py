"""KServe datatypes: BYTES framing, raw and typed decoding, OpenVINO types, output encoding."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest

from pyovms.tensors import datatypes
from pyovms.tensors.messages import InferOutput


def test_bytes_framing_round_trip():
    items = [b"", b"a", "zażółć".encode(), bytes(range(256))]
    framed = datatypes.join_bytes(items)
    assert framed[:4] == struct.pack("<I", 0)
    assert datatypes.split_bytes(framed) == items


@pytest.mark.parametrize("buffer", [b"\x05\x00\x00\x00abc", b"\x01\x00\x00\x00ab", b"\x01\x00"])
def test_bytes_framing_rejects_broken_buffers(buffer):
    assert datatypes.split_bytes(buffer) is None


def test_raw_decode_is_a_view_without_copy():
    buffer = np.arange(6, dtype="<f4").tobytes()
    array = datatypes.decode_raw(datatypes.DATATYPES["FP32"], (2, 3), buffer)
    assert array.base is not None and not array.flags.owndata
    np.testing.assert_array_equal(array, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_contents_decode_casts_like_c():
    contents = SimpleNamespace(int_contents=[300, -129, 5])
    array = datatypes.decode_contents(datatypes.DATATYPES["INT8"], (3,), contents)
    assert array.dtype == np.int8 and array.tolist() == [44, 127, 5]


def test_openvino_types_map_to_kserve_and_ovms_precisions():
    assert datatypes.from_openvino("f32") == ("FP32", "FP32")
    assert datatypes.from_openvino("i64") == ("INT64", "I64")
    assert datatypes.from_openvino("string") == ("BYTES", "STRING")
    assert datatypes.from_openvino("bf16") == ("INVALID", "BF16")


def test_output_encoding_of_strings_and_numbers():
    output = InferOutput.from_array("s", np.array([b"ab", b"c"], dtype=object))
    assert (output.datatype, output.shape) == ("BYTES", (2,))
    assert output.as_numpy().tolist() == [b"ab", b"c"]
    number = InferOutput.from_array("n", np.array([[1, 2]], dtype=np.uint16))
    assert (number.datatype, number.shape, number.raw) == ("UINT16", (1, 2), b"\x01\x00\x02\x00")


def test_strings_from_2d_cut_at_first_nul():
    rows = np.array([[97, 98, 0, 99], [100, 101, 102, 103]], dtype=np.uint8)
    assert datatypes.strings_from_2d(rows).tolist() == [b"ab", b"defg"]
