"""Protocol-neutral request, response and metadata types: what front ends build and read.

Front ends translate their wire messages into these and back; nothing here knows protobuf or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import ServingError
from ..observability.statistics import InferStatistics
from . import datatypes
from .shapes import Shape, element_count


class TensorContents(Protocol):
    """Typed tensor values: any object with the `InferTensorContents` field names as sequences."""

    bool_contents: Any
    int_contents: Any
    int64_contents: Any
    uint_contents: Any
    uint64_contents: Any
    fp32_contents: Any
    fp64_contents: Any
    bytes_contents: Any


@dataclass(slots=True)
class InferInput:
    """One input tensor of a request: data in `contents` (typed values: the protobuf contents message, or a flat
    numpy array of the datatype's dtype from REST JSON) or in `raw` (encoded bytes)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    contents: TensorContents | np.ndarray | None = None
    raw: bytes | memoryview | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """An inference request addressed to a servable name and an optional version string."""

    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: list[InferInput] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    """Requested output names; empty means all."""
    parameters: dict[str, Any] = field(default_factory=dict)
    raw_input_count: int = 0
    """How many raw buffers came with the request (must be 0 or the number of inputs)."""
    output_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Parameters of requested outputs that have some (shared memory targets), by output name."""


@dataclass(slots=True)
class InferOutput:
    """One output tensor, held in its raw KServe encoding (little-endian, BYTES length-prefixed)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes
    parameters: dict[str, Any] | None = None
    """Set for an output written to shared memory (then `raw` is empty): where it went."""

    @classmethod
    def from_array(cls, name: str, array: np.ndarray) -> InferOutput:
        datatype, raw = datatypes.encode_array(array)
        shape = (len(array.reshape(-1)),) if datatype == "BYTES" and array.ndim == 0 else tuple(array.shape)
        return cls(name, datatype, shape, raw)

    def as_numpy(self) -> np.ndarray:
        """The values as numpy (a view for numbers, an object array of bytes for BYTES)."""
        if self.datatype == "BYTES":
            items = datatypes.split_bytes(self.raw) or []
            return np.array(items, dtype=object).reshape(self.shape)
        return datatypes.decode_raw(datatypes.DATATYPES[self.datatype], self.shape, self.raw)


@dataclass(slots=True)
class InferResponse:
    """The answer to an `InferRequest`; outputs sorted by name."""

    model_name: str
    model_version: str
    id: str
    outputs: list[InferOutput]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StreamError:
    """A request of a stream answered with an error; the stream goes on. `request_id` is the request's id, given back
    with the error as Triton does; None for a graph's in-stream errors, which OVMS sends alone."""

    error: ServingError
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A servable's input or output as clients see it (mapped name, KServe datatype, effective shape)."""

    name: str
    datatype: str
    precision: str
    shape: Shape
    batch_index: int | None = None
    """Position of the batch dimension (`N` in the layout; first by default; None for scalars)."""
    bytes_hint: str | None = None
    """What a BYTES request means for this input: `string`, `string_2d`, `image` or None (not accepted)."""
    layout: str = ""
    """The endpoint layout as OpenVINO writes it (`[N,H,W,C]`, `[N,C,H,W]` ...); empty when unspecified."""
    exact: tuple[tuple[int, ...], np.dtype, int] | None = field(default=None, init=False, compare=False, repr=False)
    """(shape, dtype, byte size) of a numeric input with a static shape: raw data of exactly that shape, type and size
    passes every check at once (`validation.py`'s shortcut); None otherwise."""

    def __post_init__(self) -> None:
        dtype = datatypes.DATATYPES[self.datatype].dtype if self.datatype in datatypes.DATATYPES else None
        if dtype is not None and all(d.lo == d.hi for d in self.shape):
            shape = tuple(d.lo for d in self.shape)
            object.__setattr__(self, "exact", (shape, dtype, dtype.itemsize * element_count(shape)))

    @property
    def metadata_shape(self) -> list[int]:
        return [d.metadata_value for d in self.shape]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What ModelMetadata answers."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What ServerMetadata answers."""

    name: str
    version: str
    extensions: list[str]


@dataclass(frozen=True, slots=True)
class VersionStatistics:
    """The statistics of one servable version, as the statistics extension reports them."""

    name: str
    version: str
    statistics: InferStatistics


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One version's state as `GET /v1/config` reports it."""

    version: str
    state: str
    error_code: str


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """One row of the repository index: a version of a model, pipeline or graph and its state (Triton's READY,
    LOADING, UNLOADING or UNAVAILABLE, with the reason); name only for a directory nothing serves."""

    name: str
    version: str = ""
    state: str = ""
    reason: str = ""
