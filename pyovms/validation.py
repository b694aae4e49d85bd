"""Request validation against a servable's inputs, in OVMS's order, producing the arrays to run.

Order (first failure wins): input count, raw/contents coherency, then for each servable input in name order:
presence, negative dimensions, BYTES handling, datatype, rank, batch dimension, other dimensions, content size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import tensors
from .errors import ServingError, Status
from .images import EncodedImages, check_images
from .inference import InferInput, InferRequest, TensorSpec
from .shapes import element_count, format_dims

MAX_STRING_ELEMENTS = 1 << 25
MAX_STRING_2D_BYTES = 1 << 30
_OVERFLOW = 1 << 64


def prepare_inputs(specs: Mapping[str, TensorSpec], request: InferRequest) -> dict[str, np.ndarray | EncodedImages]:
    """Validate `request` against `specs` and return one array per input name (encoded images are decoded later,
    off the event loop: `pyovms.images.decode_images`)."""
    inputs = request.inputs
    if not inputs or len(inputs) != len(specs):
        raise ServingError(Status.INVALID_NO_OF_INPUTS, f"Expected: {len(specs)}; Actual: {len(inputs)}")
    check_buffers(request)
    by_name = {tensor.name: tensor for tensor in inputs}
    prepared: dict[str, np.ndarray | EncodedImages] = {}
    for name in sorted(specs):
        tensor = by_name.get(name)
        if tensor is None:
            raise ServingError(Status.INVALID_MISSING_INPUT, f"Required input: {name}")
        prepared[name] = _prepare(specs[name], tensor)
    return prepared


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


def _prepare(spec: TensorSpec, tensor: InferInput) -> np.ndarray | EncodedImages:
    where = f"input name: {spec.name}"
    shape = tensor.shape
    if any(n < 0 for n in shape):
        raise ServingError(
            Status.INVALID_SHAPE, f"Negative or zero dimension size is not acceptable: {format_dims(shape)}; {where}"
        )
    if tensor.datatype == "BYTES":
        if spec.bytes_hint == "string":
            return _native_strings(spec, tensor, where)
        if spec.bytes_hint == "string_2d":
            return _strings_2d(spec, tensor, where)
        if spec.bytes_hint == "image":
            return check_images(spec, shape, _image_items(tensor, where), where)
    datatype = tensors.DATATYPES.get(tensor.datatype)
    if datatype is None or tensor.datatype != spec.datatype:
        raise ServingError(Status.INVALID_PRECISION, f"Expected: {spec.precision}; Actual: {tensor.datatype}; {where}")
    check_dims(spec, shape, where)
    count = element_count(shape)
    assert datatype.dtype is not None
    expected = count * datatype.dtype.itemsize
    if expected >= _OVERFLOW:
        raise ServingError(Status.INVALID_CONTENT_SIZE, f"Shape dimensions overflow; {where}")
    if tensor.raw is not None:
        if len(tensor.raw) != expected:
            raise ServingError(
                Status.INVALID_CONTENT_SIZE, f"Expected: {expected} bytes; Actual: {len(tensor.raw)} bytes; {where}"
            )
        return tensors.decode_raw(datatype, shape, tensor.raw)
    values = tensors.contents_values(datatype, tensor.contents)
    if len(values) != count:
        raise ServingError(
            Status.INVALID_VALUE_COUNT, f"Expected: {count} values; Actual: {len(values)} values; {where}"
        )
    return tensors.decode_contents(datatype, shape, tensor.contents)


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


def _string_items(tensor: InferInput, where: str) -> list[bytes]:
    if tensor.raw is not None:
        items = tensors.split_bytes(tensor.raw)
        if items is None:
            raise ServingError(Status.INVALID_INPUT_FORMAT, where)
        return items
    if tensor.contents is None:
        return []
    if isinstance(tensor.contents, np.ndarray):  # REST JSON strings, already UTF-8 bytes
        return list(tensor.contents)
    return list(tensor.contents.bytes_contents)


def _image_items(tensor: InferInput, where: str) -> list[bytes]:
    """Encoded files: one per bytes_contents element, or length-prefixed in the raw buffer."""
    if tensor.raw is not None:
        items = tensors.split_bytes(tensor.raw)
        if items is None:
            raise ServingError(Status.IMAGE_PARSING_FAILED, f"raw buffer framing is broken; {where}")
        return items
    return _string_items(tensor, where)


def _native_strings(spec: TensorSpec, tensor: InferInput, where: str) -> np.ndarray:
    """BYTES elements as an object array of bytes; the framing is checked before the shape (OVMS's order)."""
    items = _string_items(tensor, where)
    check_dims(spec, tensor.shape, where)
    count = element_count(tensor.shape)
    if len(items) != count:
        raise ServingError(
            Status.INVALID_VALUE_COUNT, f"Expected: {count} values; Actual: {len(items)} values; {where}"
        )
    if count > MAX_STRING_ELEMENTS:
        raise ServingError(
            Status.INVALID_STRING_MAX_SIZE_EXCEEDED, f"element count {count} exceeds max {MAX_STRING_ELEMENTS}; {where}"
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
    items = _string_items(tensor, where)
    if len(items) != tensor.shape[0]:
        raise ServingError(
            Status.INVALID_VALUE_COUNT, f"Expected: {tensor.shape[0]} values; Actual: {len(items)} values; {where}"
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
