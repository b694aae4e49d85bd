"""`pyovms.Tensor`, the tensor type of Python graph nodes, and its conversions from request inputs and to response
outputs.

OVMS's `Tensor` is a buffer-protocol object with `name`, `shape`, `datatype`, `data` and `size`. Python 3.11 cannot
export a buffer from a pure Python class, so this one is a `numpy.ndarray` subclass viewing the caller's buffer
without a copy; `bytes()`, `memoryview()`, `np.array()`, `np.frombuffer()` and `struct` all read that buffer.
`shape` and `size` report OVMS's meaning (the declared shape; the size in bytes), and numpy operations on a Tensor
give plain arrays, so the overridden attributes never leak into numpy's own code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ServingError, Status
from . import datatypes
from .messages import InferInput, InferOutput
from .shapes import element_count, format_dims

_FORMATS = {
    "?": "BOOL",
    "B": "UINT8",
    "H": "UINT16",
    "I": "UINT32",
    "Q": "UINT64",
    "b": "INT8",
    "h": "INT16",
    "i": "INT32",
    "q": "INT64",
    "e": "FP16",
    "f": "FP32",
    "d": "FP64",
}
_DTYPES = {datatype: np.dtype(f"<{code}") for code, datatype in _FORMATS.items()}
"""Each datatype's numpy dtype exporting OVMS's format (`q`, not numpy's `l`, for INT64)."""
_SIZED = {("s", 1): "INT8", ("s", 2): "INT16", ("s", 4): "INT32", ("s", 8): "INT64"}
_SIZED |= {("u", 1): "UINT8", ("u", 2): "UINT16", ("u", 4): "UINT32", ("u", 8): "UINT64"}
_TOO_LARGE = "Provided shape and datatype declare too large buffer."
_CUSTOM_IN_CONTENTS = "Provided datatype is invalid, custom datatypes are allowed only when raw_input_contents is used."


def datatype_of(format: str, itemsize: int) -> str:
    """The KServe datatype of a struct format; the format itself when it names none (`7w`, `9s`, big-endian)."""
    code = format
    if len(code) > 1 and code[0] in "<=@!>":
        if code[0] in "!>" and itemsize != 1:  # big-endian data is not a KServe (little-endian) datatype
            return format
        code = code[1:]
    if code in ("l", "L", "n", "N"):  # C long / ssize_t: the width depends on platform and prefix
        return _SIZED.get(("s" if code in "ln" else "u", itemsize), format)
    return _FORMATS.get(code, format)


def _buffer(data: Any) -> tuple[np.ndarray, str]:
    """A C-contiguous plain array over `data` (a view unless `data` is not contiguous) and the buffer's format."""
    if isinstance(data, np.ndarray):
        array = data.view(np.ndarray)
        format = memoryview(array).format
    else:
        view = memoryview(data)
        format = view.format
        try:
            array = np.asarray(view)
        except (ValueError, TypeError, NotImplementedError):  # a format numpy cannot read: its bytes
            array = np.frombuffer(view if view.c_contiguous else view.tobytes(), dtype=np.uint8)
    if array.dtype.hasobject:
        raise TypeError("a Tensor needs a buffer of values; an object array holds pointers")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array, format


def _plain(value: Any) -> Any:
    """`value` with every Tensor (also inside lists, tuples and dicts) seen as a plain ndarray."""
    if isinstance(value, Tensor):
        return value.view(np.ndarray)
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _on_buffer(method: Any) -> Any:
    """An ndarray method run on the plain array, so numpy's Python code reads the buffer's shape, not ours."""

    def call(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        return method(self.view(np.ndarray), *args, **kwargs)

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


class Tensor(np.ndarray):
    """A named buffer as OVMS's `pyovms.Tensor`: `Tensor(name, data, shape=None, datatype=None)`.

    `data` is anything with the buffer protocol; it is viewed, not copied (a non-contiguous one is copied once).
    `shape` and `datatype` default to the buffer's shape and the datatype of its struct format; given explicitly
    they only relabel the buffer (OVMS never reshapes or converts it).
    """

    __slots__ = ("_datatype", "_name", "_shape")
    _name: str
    _shape: tuple[int, ...] | None
    _datatype: str | None

    def __new__(cls, name: str, data: Any, shape: Iterable[int] | None = None, datatype: str | None = None) -> Tensor:
        array, format = _buffer(data)
        tensor = array.view(cls)
        tensor._name = str(name)
        tensor._shape = None if shape is None else tuple(int(n) for n in shape)
        tensor._datatype = datatype_of(format, array.itemsize) if datatype is None else str(datatype)
        return tensor

    def __array_finalize__(self, obj: Any) -> None:
        """Views and copies keep the name; they keep shape and datatype only while the buffer layout is the same."""
        self._name = getattr(obj, "_name", "")
        same = (
            isinstance(obj, Tensor)
            and obj.dtype == self.dtype
            and np.ndarray.shape.__get__(obj) == np.ndarray.shape.__get__(self)
        )
        self._shape = obj._shape if same else None
        self._datatype = obj._datatype if same else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        """The declared shape (the buffer's own unless given)."""
        return np.ndarray.shape.__get__(self) if self._shape is None else self._shape

    @property
    def datatype(self) -> str:
        if self._datatype is None:  # a view made by numpy: derive it from the buffer
            self._datatype = datatype_of(memoryview(self).format, self.itemsize)
        return self._datatype

    @property
    def size(self) -> int:  # type: ignore[override]
        """The buffer size in bytes (OVMS's meaning, not numpy's element count)."""
        return self.nbytes

    # numpy operations give plain arrays: results are values, not relabelled buffers.
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return getattr(ufunc, method)(*_plain(inputs), **_plain(kwargs))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return super().__array_function__(func, types, _plain(args), _plain(kwargs))

    mean = _on_buffer(np.ndarray.mean)
    var = _on_buffer(np.ndarray.var)
    std = _on_buffer(np.ndarray.std)

    def __getitem__(self, key: Any) -> Any:
        return self.view(np.ndarray)[key]

    def __reduce__(self) -> tuple[Any, ...]:
        return Tensor, (self._name, self.view(np.ndarray), self._shape, self.datatype)

    def __repr__(self) -> str:
        return f"Tensor(name={self.name!r}, shape={self.shape}, datatype={self.datatype!r}, size={self.size})"

    __str__ = __repr__


def tensor_from_input(tensor: InferInput) -> Tensor:
    """A request input as a Python node sees it (OVMS rules): numbers as typed buffers of the request shape, BYTES
    contents framed as `<u32 length><bytes>`, and raw BYTES or custom datatypes passed on as uint8 bytes."""
    name, shape, where = tensor.name, tuple(tensor.shape), f"input name: {tensor.name}"
    if any(n < 0 for n in shape):
        raise ServingError(
            Status.INVALID_SHAPE, f"Negative or zero dimension size is not acceptable: {format_dims(shape)}; {where}"
        )
    datatype = datatypes.DATATYPES.get(tensor.datatype)
    if datatype is None or datatype.dtype is None:  # BYTES or custom
        if tensor.raw is not None:
            return Tensor(name, np.frombuffer(tensor.raw, dtype=np.uint8), shape, tensor.datatype)
        if datatype is None:
            raise ServingError(Status.INVALID_PRECISION, f"{_CUSTOM_IN_CONTENTS}; {where}")
        contents = tensor.contents
        items = () if contents is None else contents if isinstance(contents, np.ndarray) else contents.bytes_contents
        return Tensor(name, np.frombuffer(datatypes.join_bytes(items), dtype=np.uint8), shape, "BYTES")
    count = element_count(shape)
    expected = count * datatype.dtype.itemsize
    if datatypes.shape_overflows(shape, datatype.dtype.itemsize):
        raise ServingError(Status.INVALID_CONTENT_SIZE, f"{_TOO_LARGE}; {where}")
    if tensor.raw is not None or tensor.contents is None:
        actual = 0 if tensor.raw is None else memoryview(tensor.raw).nbytes
        if actual != expected:
            raise ServingError(
                Status.INVALID_CONTENT_SIZE,
                f"Invalid Python tensor buffer size. Actual: {actual}; Expected: {expected}; {where}",
            )
        array = datatypes.decode_raw(datatype, shape, tensor.raw or b"")
        return Tensor(name, array.view(_DTYPES[datatype.name]), shape, datatype.name)
    values = datatypes.contents_values(datatype, tensor.contents)
    if len(values) != count:
        raise ServingError(
            Status.INVALID_VALUE_COUNT, f"Expected: {count} values; Actual: {len(values)} values; {where}"
        )
    array = datatypes.decode_contents(datatype, shape, tensor.contents)
    return Tensor(name, array.view(_DTYPES[datatype.name]), shape, datatype.name)


def tensor_to_output(tensor: Tensor, name: str | None = None) -> InferOutput:
    """A Python node's tensor as a response output: its datatype and declared shape over its raw bytes, as OVMS."""
    return InferOutput(name or tensor.name, tensor.datatype, tuple(tensor.shape), bytes(tensor))
