"""KServe datatypes and their encodings, in both directions, with no protobuf or wire library here.

- The datatype table: KServe name, numpy dtype, the `InferTensorContents` field that carries it, and the OVMS
  precision name used in error texts.
- Raw buffers (little-endian, row-major) become numpy views without a copy; typed contents become one numpy
  array per tensor.
- BYTES elements are framed as `<uint32 little-endian length><bytes>` one after another.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Datatype:
    """One KServe datatype."""

    name: str
    precision: str
    """OVMS's internal precision name (FP32, I64, U8, STRING ...), shown in `Expected:` of precision errors."""
    dtype: np.dtype | None
    """Little-endian numpy dtype of one element; None for BYTES."""
    contents_field: str | None
    """The `InferTensorContents` field that carries values of this type; None when only raw is allowed."""
    contents_dtype: np.dtype | None
    """The dtype of that field's values, before the C-style cast to `dtype`."""


def _dt(name: str, precision: str, dtype: str | None, field: str | None, field_dtype: str | None) -> Datatype:
    return Datatype(
        name,
        precision,
        np.dtype(dtype) if dtype else None,
        f"{field}_contents" if field else None,
        np.dtype(field_dtype) if field_dtype else None,
    )


DATATYPES: dict[str, Datatype] = {
    d.name: d
    for d in (
        _dt("BOOL", "BOOL", "?", "bool", "?"),
        _dt("UINT8", "U8", "u1", "uint", "<u4"),
        _dt("UINT16", "U16", "<u2", "uint", "<u4"),
        _dt("UINT32", "U32", "<u4", "uint", "<u4"),
        _dt("UINT64", "U64", "<u8", "uint64", "<u8"),
        _dt("INT8", "I8", "i1", "int", "<i4"),
        _dt("INT16", "I16", "<i2", "int", "<i4"),
        _dt("INT32", "I32", "<i4", "int", "<i4"),
        _dt("INT64", "I64", "<i8", "int64", "<i8"),
        _dt("FP16", "FP16", "<f2", None, None),
        _dt("FP32", "FP32", "<f4", "fp32", "<f4"),
        _dt("FP64", "FP64", "<f8", "fp64", "<f8"),
        _dt("BYTES", "STRING", None, "bytes", None),
    )
}

INVALID = "INVALID"
"""The datatype model metadata reports for a precision KServe cannot carry (BF16, INT4 ...)."""

# OpenVINO element type names (ov.Type.get_type_name()) to KServe datatypes.
_FROM_OPENVINO = {
    "boolean": "BOOL",
    "u8": "UINT8",
    "u16": "UINT16",
    "u32": "UINT32",
    "u64": "UINT64",
    "i8": "INT8",
    "i16": "INT16",
    "i32": "INT32",
    "i64": "INT64",
    "f16": "FP16",
    "f32": "FP32",
    "f64": "FP64",
    "string": "BYTES",
}

# OVMS precision names of OpenVINO types KServe cannot carry.
_OTHER_PRECISIONS = {"bf16": "BF16", "u4": "U4", "i4": "I4", "u1": "U1", "f8e4m3": "FP8", "f8e5m2": "FP8"}


def from_openvino(type_name: str) -> tuple[str, str]:
    """(KServe datatype, OVMS precision) of an OpenVINO element type name."""
    kserve = _FROM_OPENVINO.get(type_name)
    if kserve is not None:
        return kserve, DATATYPES[kserve].precision
    return INVALID, _OTHER_PRECISIONS.get(type_name, type_name.upper())


def triton_config_datatype(datatype: str) -> str:
    """Triton's model-configuration name of a KServe datatype (`TYPE_FP32`; BYTES is `TYPE_STRING`)."""
    if datatype == "BYTES":
        return "TYPE_STRING"
    return f"TYPE_{datatype}" if datatype in DATATYPES else "TYPE_INVALID"


def from_numpy(dtype: np.dtype) -> str:
    """The KServe datatype of a numpy dtype (bytes and str arrays are BYTES)."""
    if dtype.kind in "SUO":
        return "BYTES"
    for d in DATATYPES.values():
        if d.dtype is not None and d.dtype.kind == dtype.kind and d.dtype.itemsize == dtype.itemsize:
            return d.name
    raise ValueError(f"no KServe datatype for numpy dtype {dtype}")


def contents_values(datatype: Datatype, contents: Any) -> Sequence[Any]:
    """The typed values of the field that carries `datatype` (empty when the type has no field); a flat numpy array
    (REST JSON data, already of the datatype's dtype) is its own values."""
    if isinstance(contents, np.ndarray):
        return contents
    if contents is None or datatype.contents_field is None:
        return ()
    return getattr(contents, datatype.contents_field)


def shape_overflows(shape: Sequence[int], itemsize: int) -> bool:
    """Whether a shape of `itemsize`-byte elements is refused as overflowing: its byte size does not fit in 64 bits
    (OVMS's rule), or it has a zero dimension and its other dimensions exceed what numpy can shape (numpy counts
    the dimensions without the zeros, so a [0, 2, 2**62] FP32 shape cannot be made although it holds nothing)."""
    total = nonzero = itemsize
    for n in shape:
        total *= n
        nonzero *= n or 1
    return total >= 1 << 64 or (total == 0 and nonzero >= 1 << 63)


def decode_raw(datatype: Datatype, shape: Sequence[int], buffer: bytes | memoryview) -> np.ndarray:
    """A read-only numpy view of a raw little-endian buffer; the caller checked its size."""
    assert datatype.dtype is not None
    return np.frombuffer(buffer, dtype=datatype.dtype).reshape(shape)


def decode_contents(datatype: Datatype, shape: Sequence[int], contents: Any) -> np.ndarray:
    """Typed contents as an array of the datatype, cast like C does (int_contents to INT8 wraps). The caller checked
    the value count; a type without a contents field (FP16) can only be empty here."""
    assert datatype.dtype is not None
    if datatype.contents_dtype is None:
        return np.empty(shape, dtype=datatype.dtype)
    values = contents_values(datatype, contents)
    if not isinstance(values, np.ndarray):
        values = np.asarray(values, dtype=datatype.contents_dtype)
    return values.astype(datatype.dtype, copy=False).reshape(shape)


def split_bytes(buffer: bytes | memoryview, max_items: int | None = None) -> list[bytes] | None:
    """Split a length-prefixed BYTES buffer into its elements; None when the framing is broken. With `max_items`,
    splitting stops after one element more than that (the caller reports the count as too large), so a buffer of
    millions of tiny elements costs no more than the count the request declared."""
    data = bytes(buffer)  # slicing bytes is about twice as fast as slicing a memoryview
    size = len(data)
    items: list[bytes] = []
    append = items.append
    limit = size if max_items is None else max_items
    from_bytes = int.from_bytes
    offset = 0
    while offset < size:
        start = offset + 4
        if start > size:
            return None
        offset = start + from_bytes(data[start - 4 : start], "little")
        if offset > size:
            return None
        append(data[start:offset])
        if len(items) > limit:
            break
    return items


def join_bytes(items: Iterable[bytes]) -> bytes:
    """Frame BYTES elements as one buffer of `<uint32 LE length><bytes>` records."""
    pack = struct.Struct("<I").pack
    parts: list[bytes] = []
    for item in items:
        parts.append(pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def encode_array(array: np.ndarray) -> tuple[str, bytes]:
    """(datatype, raw bytes) of an output array: one copy for numbers, framing for strings."""
    if array.dtype.kind in "SUO":
        items = (x.encode() if isinstance(x, str) else bytes(x) for x in array.reshape(-1))
        return "BYTES", join_bytes(items)
    datatype = from_numpy(array.dtype)
    le = DATATYPES[datatype].dtype
    assert le is not None
    return datatype, np.ascontiguousarray(array, dtype=le).tobytes()


def strings_from_2d(array: np.ndarray) -> np.ndarray:
    """Rows of a U8 [N, W] tensor as N byte strings, each cut at its first NUL (OVMS's `_string` outputs)."""
    is_nul = array == 0
    ends = np.where(is_nul.any(axis=1), is_nul.argmax(axis=1), array.shape[1])
    return np.array([row[:end].tobytes() for row, end in zip(array, ends, strict=True)], dtype=object)
