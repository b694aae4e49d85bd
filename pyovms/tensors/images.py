"""Binary image inputs: encoded JPEG/PNG (any format OpenCV reads) in BYTES, decoded into the model's N...HWC tensor.

OVMS's rules (spec §3.2): the request shape is `[N]`, one encoded file per element; the endpoint layout must be
N...HWC-compatible; OpenCV decodes "unchanged" (the file's channel count, BGR order, no normalisation); the channel
count must equal the model's C; images are resized (bilinear) to the model's H and W when the layout is NHWC,
N?HWC or unspecified and no dimension is -1 (range dimensions clamp the image size), otherwise every image must
have the first one's resolution; the pixels are converted, unscaled, to the model's precision.

The checks that need no pixels run first, on the event loop (`check_images`); decoding, resizing and conversion run
on a thread pool (OpenCV and numpy release the GIL), all images of a request in parallel (`decode_images`). Before
an image is decoded, the width x height x channels its header declares (PNG and JPEG) is checked against a limit, so
a small file cannot make the server allocate gigabytes; OpenCV's own pixel limit covers other formats.
"""

from __future__ import annotations

import asyncio
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import ServingError, Status
from .datatypes import DATATYPES
from .messages import TensorSpec
from .shapes import Dim, format_dims

DEFAULT_MAX_DECODED_BYTES = 1 << 30
"""Default limit of width x height x channels (bytes of 8-bit pixels) an image header may declare."""

IMAGE_DATATYPES = {"FP32", "FP64", "FP16", "INT32", "INT16", "UINT16", "INT8", "UINT8"}
_IMAGE_DATATYPES_TEXT = ", ".join(sorted(IMAGE_DATATYPES))
_UNSPECIFIED = {"", "[...]"}
_RESIZABLE = {"[N,H,W,C]", "[N,?,H,W,C]"} | _UNSPECIFIED
_COMPATIBLE = _RESIZABLE | {"[N,...]"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}  # by colour type; palette images may carry alpha
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="pyovms-image")
    return _executor


@dataclass(slots=True)
class EncodedImages:
    """A validated batch of encoded images for one input, waiting to be decoded."""

    spec: TensorSpec
    items: list[bytes]
    where: str


def check_images(spec: TensorSpec, shape: tuple[int, ...], items: list[bytes], where: str) -> EncodedImages:
    """Everything that can be checked before decoding, in OVMS's order."""
    if len(shape) != 1:
        raise ServingError(
            Status.INVALID_NO_OF_SHAPE_DIMENSIONS,
            f"Expected number of input shape dimensions: 1; Actual: {len(shape)}; {where}",
        )
    if shape[0] != len(items) or not items:
        raise ServingError(Status.INVALID_BATCH_SIZE, f"Expected: {shape[0]} images; Actual: {len(items)}; {where}")
    if spec.batch_index is None:
        raise ServingError(Status.INVALID_BATCH_SIZE, f"Batch not present in {where}")
    batch = spec.shape[spec.batch_index]
    if not batch.accepts(len(items)):
        raise ServingError(Status.INVALID_BATCH_SIZE, f"Expected: {batch}; Actual: {len(items)}; {where}")
    if spec.layout not in _COMPATIBLE:
        raise ServingError(Status.UNSUPPORTED_LAYOUT, f"endpoint layout: {spec.layout}; {where}")
    if len(spec.shape) not in (4, 5):
        raise ServingError(Status.INVALID_SHAPE, f"binary images need a 4-D input; {where}")
    if spec.datatype not in IMAGE_DATATYPES:
        raise ServingError(
            Status.INVALID_PRECISION,
            f"Expected: one of {_IMAGE_DATATYPES_TEXT} for binary images; Actual: {spec.datatype}; {where}",
        )
    for index, item in enumerate(items):
        if not item:
            raise ServingError(Status.BYTES_CONTENTS_EMPTY, f"image {index}; {where}")
    return EncodedImages(spec, items, where)


async def decode_images(images: EncodedImages, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> np.ndarray:
    """The batch as the model's tensor: [N,H,W,C] (or [N,1,H,W,C] behind a demultiplexer), model precision.

    Each image is decoded, resized (when the model's H and W are static) and converted in one task on the pool:
    a thread hand-off costs about as much as decoding a small JPEG, so there is one per image, not one per step.
    """
    loop = asyncio.get_running_loop()
    pool = _pool()
    spec, where = images.spec, images.where
    height, width, channels = _dims(spec)
    resizable = _resizable(spec)
    known = (height.lo, width.lo) if resizable and height.is_static and width.is_static else None
    dtype = _dtype(spec)
    converted = not (resizable and known is None)  # range dimensions: resize (below) before converting
    decoded = await asyncio.gather(
        *(
            loop.run_in_executor(
                pool, _decode_fit, item, index, max_decoded_bytes, where, known, dtype if converted else None
            )
            for index, item in enumerate(images.items)
        )
    )
    first = decoded[0]
    if not channels.accepts(first.shape[2]) or any(image.shape[2] != first.shape[2] for image in decoded):
        actual = next((image.shape[2] for image in decoded if not channels.accepts(image.shape[2])), first.shape[2])
        expected = channels if not channels.is_any else first.shape[2]
        raise ServingError(Status.INVALID_NO_OF_CHANNELS, f"Expected: {expected}; Actual: {actual}; {where}")
    if resizable and known is None:  # range dimensions: the first image's size, clamped, for every image
        target = (height.clamp(first.shape[0]), width.clamp(first.shape[1]))
        decoded = await asyncio.gather(
            *(loop.run_in_executor(pool, _resize_convert, image, target, dtype) for image in decoded)
        )
    elif not resizable:
        for image in decoded[1:]:
            if image.shape[:2] != first.shape[:2]:
                raise ServingError(
                    Status.BINARY_IMAGES_RESOLUTION_MISMATCH,
                    f"first: {first.shape[1]}x{first.shape[0]}; other: {image.shape[1]}x{image.shape[0]}; {where}",
                )
        if not (height.accepts(first.shape[0]) and width.accepts(first.shape[1])):
            actual = (len(decoded), *first.shape)
            raise ServingError(
                Status.INVALID_SHAPE, f"Expected: {format_dims(spec.shape)}; Actual: {format_dims(actual)}; {where}"
            )
    batch = decoded[0][np.newaxis] if len(decoded) == 1 else np.stack(decoded)
    return batch[:, np.newaxis] if len(spec.shape) == 5 else batch


def _dims(spec: TensorSpec) -> tuple[Dim, Dim, Dim]:
    height, width, channels = spec.shape[-3:]
    return height, width, channels


def _resizable(spec: TensorSpec) -> bool:
    """NHWC, N?HWC or unspecified layout and no -1 dimension (behind a demultiplexer, the branch count aside)."""
    dims = spec.shape[1:] if len(spec.shape) == 5 else spec.shape
    return spec.layout in _RESIZABLE and not any(dim.is_any for dim in dims)


def _dtype(spec: TensorSpec) -> np.dtype:
    dtype = DATATYPES[spec.datatype].dtype
    assert dtype is not None
    return dtype


def _decode_fit(
    item: bytes,
    index: int,
    max_decoded_bytes: int,
    where: str,
    size: tuple[int, int] | None,
    dtype: np.dtype | None,
) -> np.ndarray:
    """One image as H x W x C, resized to `size` and converted to `dtype` when given (runs on the pool); the header's
    declared size is checked first."""
    import cv2

    declared = declared_size(item)
    if declared is not None:
        width, height, channels = declared
        if width * height * channels > max_decoded_bytes:
            raise ServingError(
                Status.IMAGE_PARSING_FAILED,
                f"image {index} declares {width}x{height}x{channels}, more than the {max_decoded_bytes} bytes "
                f"allowed (--max_image_decoded_bytes); {where}",
            )
    try:
        image = cv2.imdecode(np.frombuffer(item, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ServingError(Status.IMAGE_PARSING_FAILED, f"image {index}: {str(exc).strip()}; {where}") from None
    if image is None:
        raise ServingError(
            Status.IMAGE_PARSING_FAILED, f"OpenCV cannot decode image {index} ({len(item)} bytes); {where}"
        )
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if size is not None:
        image = _resize(image, size)
    return image if dtype is None else image.astype(dtype, copy=False)


def _resize_convert(image: np.ndarray, target: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    return _resize(image, target).astype(dtype, copy=False)


def _resize(image: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = target
    if image.shape[:2] == (height, width):
        return image
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return resized if resized.ndim == 3 else resized[:, :, np.newaxis]


def declared_size(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, channels) from a PNG or JPEG header, without decoding; None for other or short data."""
    if data[:8] == _PNG_SIGNATURE and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height, _PNG_CHANNELS.get(data[25], 4)
    if data[:2] != b"\xff\xd8":
        return None
    offset = 2
    size = len(data)
    while offset + 4 <= size:
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _JPEG_SOF:
            if offset + 10 > size:
                return None
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height, data[offset + 9]
        offset += 2 + length
    return None
