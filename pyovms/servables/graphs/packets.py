"""Graph inputs and outputs on the wire: what packet a request tensor becomes, by the tag of its graph stream, and
back (spec §6.2).

| tag prefix | packet payload |
|---|---|
| none, `OVTENSOR` (and any tag not listed) | numpy array; FP32, FP64, INT64..INT8, UINT64..UINT8, BOOL, FP16 raw only |
| `OVMS_PY_TENSOR` | `pyovms.Tensor`; any datatype, BYTES framed, custom datatypes in raw |
| `TENSOR` | numpy array; FP32, FP16 (raw), INT32, INT8, UINT8, BOOL |
| `IMAGE` | numpy array, HWC, raw data only; 1, 3 or 4 channels of UINT8, INT8, UINT16, INT16, FP16, or 1, 2 of FP32 |
| `REQUEST` / `RESPONSE` | the whole `InferRequest` / an `InferResponse` (one of each, together) |

Images are never decoded here: graphs take raw pixel arrays, as in OVMS. Messages name the input once:
`...; input name: x`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ServingError, Status
from ...tensors import datatypes
from ...tensors.messages import InferInput, InferOutput, InferRequest, InferResponse
from ...tensors.node_tensor import Tensor, tensor_from_input, tensor_to_output
from ...tensors.shapes import format_dims
from ...tensors.validation import decode_numeric

OVTENSOR = "OVTENSOR"
PY_TENSOR = "OVMS_PY_TENSOR"
TENSOR = "TENSOR"
IMAGE = "IMAGE"
REQUEST = "REQUEST"
RESPONSE = "RESPONSE"
UNSERVED = ("TFTENSOR", "TFLITE_TENSOR")
"""Tags whose packet types (TensorFlow and TFLite tensors) pyovms has no calculators for."""

_OVTENSOR_TYPES = frozenset(datatypes.DATATYPES) - {"BYTES"}
_TENSOR_TYPES = frozenset({"FP32", "FP16", "INT32", "INT8", "UINT8", "BOOL"})
_IMAGE_CHANNELS = {
    "UINT8": (1, 3, 4),
    "INT8": (1, 3, 4),
    "UINT16": (1, 3, 4),
    "INT16": (1, 3, 4),
    "FP16": (1, 3, 4),
    "FP32": (1, 2),
}


def kind_of(tag: str) -> str:
    """The packet kind a graph stream's tag selects."""
    for kind in (PY_TENSOR, OVTENSOR, *UNSERVED, TENSOR, IMAGE, REQUEST, RESPONSE):
        if tag.startswith(kind):
            return kind
    return OVTENSOR


def to_packet(kind: str, tensor: InferInput) -> Any:
    """The payload a request input becomes on a graph input stream of that kind."""
    where = f"input name: {tensor.name}"
    if any(n < 0 for n in tensor.shape):
        raise ServingError(
            Status.INVALID_SHAPE,
            f"Negative or zero dimension size is not acceptable: {format_dims(tensor.shape)}; {where}",
        )
    if kind == PY_TENSOR:
        return tensor_from_input(tensor)
    allowed = _TENSOR_TYPES if kind == TENSOR else frozenset(_IMAGE_CHANNELS) if kind == IMAGE else _OVTENSOR_TYPES
    if tensor.datatype not in allowed:
        raise ServingError(
            Status.INVALID_PRECISION,
            f"Expected one of: {', '.join(sorted(allowed))}; Actual: {tensor.datatype}; {where}",
        )
    if kind == IMAGE:
        _check_image(tensor, where)
    return decode_numeric(tensor, where, no_data_is_raw=True)


def _check_image(tensor: InferInput, where: str) -> None:
    shape = tensor.shape
    if len(shape) != 3 or not all(shape):
        raise ServingError(
            Status.INVALID_SHAPE, f"an IMAGE must be HWC with every dimension above 0: {format_dims(shape)}; {where}"
        )
    if shape[2] not in _IMAGE_CHANNELS[tensor.datatype]:
        raise ServingError(
            Status.INVALID_NO_OF_CHANNELS,
            f"{tensor.datatype} images have {_IMAGE_CHANNELS[tensor.datatype]} channels; Actual: {shape[2]}; {where}",
        )
    if tensor.raw is None:
        raise ServingError(Status.INVALID_CONTENT_SIZE, f"IMAGE data must come in raw_input_contents; {where}")


def to_outputs(name: str, payload: Any) -> list[InferOutput]:
    """The response outputs one graph output packet becomes.

    A `pyovms.Tensor` keeps its own name, datatype and shape; a numpy array takes the stream's name; an
    `InferResponse` (RESPONSE stream) gives its outputs; an `InferRequest` arriving there (a pass-through graph)
    echoes its inputs; other values (side packets) become numpy scalars.
    """
    if isinstance(payload, Tensor):
        return [tensor_to_output(payload)]
    if isinstance(payload, np.ndarray):
        return [InferOutput.from_array(name, payload)]
    if isinstance(payload, InferResponse):
        return list(payload.outputs)
    if isinstance(payload, InferRequest):
        return [tensor_to_output(tensor_from_input(tensor)) for tensor in payload.inputs]
    if isinstance(payload, str | bytes):
        return [InferOutput.from_array(name, np.array([payload], dtype=object))]
    try:
        return [InferOutput.from_array(name, np.asarray(payload))]
    except ValueError as exc:
        raise ServingError(
            Status.MEDIAPIPE_EXECUTION_ERROR, f"output {name}: a {type(payload).__name__} packet cannot be sent"
        ) from exc
