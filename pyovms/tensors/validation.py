"""Request validation against a servable's inputs, in OVMS's order, producing the arrays to run.

Order (first failure wins): input count, raw/contents coherency, then for each servable input in name order:
presence, negative dimensions, BYTES handling, datatype, rank, batch dimension, other dimensions, content size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ServingError, Status
from . import datatypes
from .images import DEFAULT_MAX_DECODED_BYTES, EncodedImages, check_images, decode_images
from .messages import InferInput, InferRequest, TensorSpec
from .shapes import element_count, format_dims

MAX_STRING_ELEMENTS = 1 << 25
MAX_STRING_2D_BYTES = 1 << 30
OFFLOAD_STRING_BYTES = 1 << 20
"""Raw BYTES buffers larger than this are split on a worker thread: about 0.6 us per element in Python, which
for millions of elements would stall every other request on the event loop."""


@dataclass(frozen=True, slots=True)
class PendingStrings:
    """A large BYTES input whose elements are split off the event loop (`resolve_pending`)."""

    convert: Callable[[], np.ndarray]


Prepared = np.ndarray | EncodedImages | PendingStrings


def prepare_inputs(specs: Mapping[str, TensorSpec], request: InferRequest) -> dict[str, Prepared]:
    """Validate `request` against `specs` and return one array per input name; encoded images and large string
    buffers are finished later, off the event loop (`resolve_pending`)."""
    inputs = request.inputs
    if not inputs or len(inputs) != len(specs):
        raise ServingError(Status.INVALID_NO_OF_INPUTS, f"Expected: {len(specs)}; Actual: {len(inputs)}")
    check_buffers(request)
    by_name = {tensor.name: tensor for tensor in inputs}
    prepared: dict[str, Prepared] = {}
    for name in sorted(specs):
        tensor = by_name.get(name)
        if tensor is None:
            raise ServingError(Status.INVALID_MISSING_INPUT, f"Required input: {name}")
        prepared[name] = _prepare(specs[name], tensor)
    return prepared


async def resolve_pending(
    inputs: dict[str, Prepared], max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
) -> dict[str, np.ndarray]:
    """`inputs` with every image batch decoded and every large string buffer split, concurrently, on threads."""
    pending = [(name, value) for name, value in inputs.items() if not isinstance(value, np.ndarray)]
    if not pending:
        return inputs  # type: ignore[return-value]  # arrays only
    done = await asyncio.gather(
        *(
            decode_images(value, max_decoded_bytes)
            if isinstance(value, EncodedImages)
            else asyncio.to_thread(value.convert)  # type: ignore[union-attr]
            for _, value in pending
        )
    )
    ready = dict(inputs)
    ready.update(zip((name for name, _ in pending), done, strict=True))
    return ready  # type: ignore[return-value]


def check_requested_outputs(outputs: Mapping[str, TensorSpec], requested: Sequence[str]) -> None:
    """Every requested output must exist (KServe: only those are returned)."""
    for name in requested:
        if name not in outputs:
            raise ServingError(
                Status.INVALID_MISSING_OUTPUT,
                f"Requested output: {name}; available outputs: {', '.join(sorted(outputs))}",
            )


def check_buffers(request: InferRequest) -> None:
    if not request.raw_input_count:
        return
    if request.raw_input_count != len(request.inputs):
        raise ServingError(
            Status.INVALID_MESSAGE_STRUCTURE,
            f"Size of raw_input_contents: {request.raw_input_count} is different than number of inputs: "
            f"{len(request.inputs)}",
        )
    for tensor in request.inputs:
        if tensor.contents is not None:
            raise ServingError(
                Status.INVALID_MESSAGE_STRUCTURE,
                "Passing buffers both in InferInputTensor contents and in raw_input_contents is not allowed. "
                f"Detected buffer in InferInputTensor contents for input: {tensor.name}",
            )


def _prepare(spec: TensorSpec, tensor: InferInput) -> Prepared:
    exact = spec.exact
    if exact is not None and tensor.shape == exact[0] and tensor.datatype == spec.datatype:
        raw = tensor.raw
        if raw is not None and len(raw) == exact[2]:  # the common case: every check below passes
            return np.frombuffer(raw, dtype=exact[1]).reshape(exact[0])
    where = f"input name: {spec.name}"
    shape = tensor.shape
    if shape and min(shape) < 0:
        raise ServingError(
            Status.INVALID_SHAPE, f"Negative or zero dimension size is not acceptable: {format_dims(shape)}; {where}"
        )
    if tensor.datatype == "BYTES" and spec.bytes_hint in ("string", "string_2d"):
        count = element_count(shape)
        if count > MAX_STRING_ELEMENTS:  # refused before any element is split out
            raise ServingError(
                Status.INVALID_STRING_MAX_SIZE_EXCEEDED,
                f"element count {count} exceeds max {MAX_STRING_ELEMENTS}; {where}",
            )
        convert = _native_strings if spec.bytes_hint == "string" else _strings_2d
        if tensor.raw is not None and len(tensor.raw) > OFFLOAD_STRING_BYTES:
            return PendingStrings(lambda: convert(spec, tensor, where))
        return convert(spec, tensor, where)
    if tensor.datatype == "BYTES" and spec.bytes_hint == "image":
        return check_images(spec, shape, _image_items(tensor, where), where)
    datatype = datatypes.DATATYPES.get(tensor.datatype)
    if datatype is None or tensor.datatype != spec.datatype:
        raise ServingError(Status.INVALID_PRECISION, f"Expected: {spec.precision}; Actual: {tensor.datatype}; {where}")
    check_dims(spec, shape, where)
    return decode_numeric(tensor, where)


def decode_numeric(tensor: InferInput, where: str, no_data_is_raw: bool = False) -> np.ndarray:
    """The array of a numeric input of a known datatype, its size checked against its shape (OVMS's messages).

    An input with neither raw data nor contents is counted as contents (`Actual: 0 values`), or as raw data
    (`Actual: 0 bytes`) with `no_data_is_raw`, as OVMS's graph deserialization reports it.
    """
    datatype = datatypes.DATATYPES[tensor.datatype]
    assert datatype.dtype is not None
    shape = tensor.shape
    count = element_count(shape)
    expected = count * datatype.dtype.itemsize
    if datatypes.shape_overflows(shape, datatype.dtype.itemsize):
        raise ServingError(Status.INVALID_CONTENT_SIZE, f"Shape dimensions overflow; {where}")
    if tensor.raw is not None or (no_data_is_raw and tensor.contents is None):
        actual = 0 if tensor.raw is None else len(tensor.raw)
        if actual != expected:
            raise ServingError(
                Status.INVALID_CONTENT_SIZE, f"Expected: {expected} bytes; Actual: {actual} bytes; {where}"
            )
        return datatypes.decode_raw(datatype, shape, tensor.raw or b"")
    values = datatypes.contents_values(datatype, tensor.contents)
    if len(values) != count:
        raise ServingError(
            Status.INVALID_VALUE_COUNT, f"Expected: {count} values; Actual: {len(values)} values; {where}"
        )
    return datatypes.decode_contents(datatype, shape, tensor.contents)


def check_dims(spec: TensorSpec, shape: tuple[int, ...], where: str) -> None:
    """Rank, batch dimension, then every other dimension against the spec (OVMS's order and messages)."""
    if len(shape) != len(spec.shape):
        raise ServingError(
            Status.INVALID_NO_OF_SHAPE_DIMENSIONS,
            f"Expected: {format_dims(spec.shape)}; Actual: {format_dims(shape)}; {where}",
        )
    batch = spec.batch_index
    if batch is not None and not spec.shape[batch].accepts(shape[batch]):
        raise ServingError(Status.INVALID_BATCH_SIZE, f"Expected: {spec.shape[batch]}; Actual: {shape[batch]}; {where}")
    for index, (dim, n) in enumerate(zip(spec.shape, shape, strict=True)):
        if index != batch and not dim.accepts(n):
            raise ServingError(
                Status.INVALID_SHAPE, f"Expected: {format_dims(spec.shape)}; Actual: {format_dims(shape)}; {where}"
            )


def _string_items(tensor: InferInput, where: str, declared: int | None = None) -> list[bytes]:
    """The elements of a BYTES input. A raw buffer is split no further than well past the `declared` count: a small
    surplus is counted exactly (and broken framing found), a buffer of millions of elements more than declared
    costs no more than the declaration."""
    if tensor.raw is not None:
        items = datatypes.split_bytes(tensor.raw, None if declared is None else _split_limit(declared))
        if items is None:
            raise ServingError(Status.INVALID_INPUT_FORMAT, where)
        return items
    if tensor.contents is None:
        return []
    if isinstance(tensor.contents, np.ndarray):  # REST JSON strings, already UTF-8 bytes
        return list(tensor.contents)
    return list(tensor.contents.bytes_contents)


def _split_limit(declared: int) -> int:
    return 2 * declared + 1024


def _actual(items: list[bytes], declared: int) -> str:
    """The element count for a message (`more than N` when splitting stopped early)."""
    limit = _split_limit(declared)
    return f"more than {limit}" if len(items) > limit else str(len(items))


def _image_items(tensor: InferInput, where: str) -> list[bytes]:
    """Encoded files: one per bytes_contents element, or length-prefixed in the raw buffer (split no further than
    one past the declared batch)."""
    if tensor.raw is not None:
        declared = min(tensor.shape[0], MAX_STRING_ELEMENTS) if len(tensor.shape) == 1 else 0
        items = datatypes.split_bytes(tensor.raw, _split_limit(declared))
        if items is None:
            raise ServingError(Status.IMAGE_PARSING_FAILED, f"raw buffer framing is broken; {where}")
        return items
    return _string_items(tensor, where)


def _native_strings(spec: TensorSpec, tensor: InferInput, where: str) -> np.ndarray:
    """BYTES elements as an object array of bytes; the framing is checked before the shape (OVMS's order)."""
    count = element_count(tensor.shape)
    items = _string_items(tensor, where, declared=count)
    check_dims(spec, tensor.shape, where)
    if len(items) != count:
        raise ServingError(
            Status.INVALID_VALUE_COUNT, f"Expected: {count} values; Actual: {_actual(items, count)} values; {where}"
        )
    strings = np.empty(count, dtype=object)
    strings[:] = items
    return strings.reshape(tensor.shape)


def _strings_2d(spec: TensorSpec, tensor: InferInput, where: str) -> np.ndarray:
    """N strings become a U8 [N, maxlen+1] tensor, each row NUL-padded (OVMS's legacy text input)."""
    if len(tensor.shape) != 1:
        raise ServingError(
            Status.INVALID_NO_OF_SHAPE_DIMENSIONS,
            f"Expected number of input shape dimensions: 1; Actual: {len(tensor.shape)}; {where}",
        )
    items = _string_items(tensor, where, declared=tensor.shape[0])
    if len(items) != tensor.shape[0]:
        actual = _actual(items, tensor.shape[0])
        raise ServingError(
            Status.INVALID_VALUE_COUNT, f"Expected: {tensor.shape[0]} values; Actual: {actual} values; {where}"
        )
    lengths = np.fromiter((len(item) for item in items), dtype=np.int64, count=len(items))
    batch, width = len(items), (int(lengths.max()) if items else 0) + 1
    if not (spec.shape[0].accepts(batch) and spec.shape[1].accepts(width)):
        raise ServingError(
            Status.INVALID_SHAPE,
            f"Expected batch size: {spec.shape[0]}; got: {batch}; Expected max null terminated string length: "
            f"{spec.shape[1]}; got: {width}; {where}",
        )
    if batch * width > MAX_STRING_2D_BYTES:
        raise ServingError(
            Status.INVALID_STRING_MAX_SIZE_EXCEEDED, f"actual {batch * width // (1 << 20)}MB (max 1GB); {where}"
        )
    array = np.zeros((batch, width), dtype=np.uint8)
    array[np.arange(width) < lengths[:, None]] = np.frombuffer(b"".join(items), dtype=np.uint8)
    return array
