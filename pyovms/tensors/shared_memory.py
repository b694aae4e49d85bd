"""System shared memory (Triton's extension): regions that local clients create under /dev/shm and register by key,
then name in a tensor's parameters instead of sending its bytes.

- A region is one POSIX shared memory object (`/dev/shm/<key>`, the key one path component, an optional leading `/`
  as `shm_open` takes it), mapped from `offset` for `byte_size` bytes at registration. Every access is checked against
  those bounds; a request reaching past them is INVALID_ARGUMENT naming the region, offset and size.
- Regions are never trusted to stay unchanged: the client can write to them at any time. Inputs are read once into
  the infer request (or read in place by OpenVINO, docs/shared_memory.md says when), and nothing read from a region
  is used to size, index or decide anything without the same checks as bytes from the network.
- A region in use by requests is unmapped only when the last of them has released it, so unregistering is safe at any
  time; new requests can no longer name it.
- The extension is off unless the server is started with `--allow_client_shm` (it lets local processes hand the
  server memory); `--shm_max_regions` and `--shm_max_bytes` bound what clients may register.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ServingError, Status
from . import datatypes
from .messages import InferOutput, InferRequest, InferResponse, TensorSpec

log = logging.getLogger("pyovms.shared_memory")

SHM_DIR = Path("/dev/shm")
DEFAULT_MAX_REGIONS = 256
DEFAULT_MAX_BYTES = 16 << 30
_KEY = re.compile(r"/?([A-Za-z0-9_.@:+-]{1,255})")
_PAGE = mmap.ALLOCATIONGRANULARITY

IN_PLACE_MIN_BYTES = 64 << 10
"""Tensors at least this large are read and written by OpenVINO in place; smaller ones are copied, which costs less
than setting a tensor on an infer request and back (measured with bench.shm on the tiny model)."""

REGION = "shared_memory_region"
BYTE_SIZE = "shared_memory_byte_size"
OFFSET = "shared_memory_offset"
PARAMETERS = (REGION, BYTE_SIZE, OFFSET)


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """A registered region as the status call reports it."""

    name: str
    key: str
    offset: int
    byte_size: int


class Region:
    """One registered, mapped region; `users` counts the requests holding it."""

    def __init__(self, name: str, key: str, offset: int, byte_size: int, directory: Path) -> None:
        self.status = RegionStatus(name, key, offset, byte_size)
        path = directory / _file_name(key)
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ServingError(Status.SHM_REGION_KEY_MISSING, f"key: {key}; region: {name}") from None
        except OSError as exc:
            raise ServingError(Status.SHM_REGION_KEY_MISSING, f"key: {key}; region: {name}; {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size:
                raise ServingError(
                    Status.SHM_REGION_OUT_OF_BOUNDS,
                    f"region: {name}; offset {offset} + byte size {byte_size} is past the end of key {key} "
                    f"({size} bytes)",
                )
            start = offset - offset % _PAGE
            self._delta = offset - start
            self._map = mmap.mmap(fd, self._delta + byte_size, mmap.MAP_SHARED, offset=start)
        finally:
            os.close(fd)
        self.users = 0
        self.retired = False

    @property
    def name(self) -> str:
        return self.status.name

    def view(self, offset: int, byte_size: int, what: str) -> memoryview:
        """`byte_size` bytes at `offset` of the region, writable; INVALID_ARGUMENT past its end."""
        if offset < 0 or byte_size < 0 or offset + byte_size > self.status.byte_size:
            raise ServingError(
                Status.SHM_REGION_OUT_OF_BOUNDS,
                f"{what}: offset {offset} + byte size {byte_size} is past the end of region {self.name} "
                f"({self.status.byte_size} bytes)",
            )
        start = self._delta + offset
        return memoryview(self._map)[start : start + byte_size]

    def close(self) -> bool:
        """Unmap; False while views of it are still alive (then the last release tries again)."""
        try:
            self._map.close()
        except BufferError:
            return False
        return True


def _file_name(key: str) -> str:
    match = _KEY.fullmatch(key)
    if match is None or match.group(1) in (".", ".."):
        raise ServingError(
            Status.SHM_REGION_KEY_MISSING, f"key: {key!r} is not a shared memory object name (one path component)"
        )
    return match.group(1)


class SharedMemoryRegistry:
    """The registered regions of one server."""

    def __init__(
        self, max_regions: int = DEFAULT_MAX_REGIONS, max_bytes: int = DEFAULT_MAX_BYTES, directory: Path = SHM_DIR
    ) -> None:
        self.max_regions = max_regions
        self.max_bytes = max_bytes
        self.directory = directory
        self._regions: dict[str, Region] = {}
        self._retired: list[Region] = []
        """Unregistered regions still held by requests (or by views not yet released)."""
        self._lock = threading.Lock()

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not name:
            raise ServingError(Status.SHM_REQUEST_INVALID, "a region needs a name")
        if offset < 0 or byte_size <= 0:
            raise ServingError(
                Status.SHM_REQUEST_INVALID, f"region: {name}; offset {offset} and byte size {byte_size}: byte size "
                "must be positive and offset not negative",
            )  # fmt: skip
        with self._lock:
            self._sweep()
            if name in self._regions:
                raise ServingError(Status.SHM_REGION_EXISTS, f"region: {name}")
            if len(self._regions) >= self.max_regions:
                raise ServingError(
                    Status.SHM_LIMIT_EXCEEDED, f"{len(self._regions)} regions are registered (--shm_max_regions)"
                )
            registered = sum(region.status.byte_size for region in self._regions.values())
            if registered + byte_size > self.max_bytes:
                raise ServingError(
                    Status.SHM_LIMIT_EXCEEDED,
                    f"region: {name}; {registered} bytes registered + {byte_size} > {self.max_bytes} (--shm_max_bytes)",
                )
            self._regions[name] = Region(name, key, offset, byte_size, self.directory)
        log.info("Registered shared memory region %s: key %s, offset %d, %d bytes", name, key, offset, byte_size)

    def unregister(self, name: str = "") -> None:
        """Unregister one region (all when `name` is empty); unknown names are not an error, as in Triton."""
        with self._lock:
            self._sweep()
            names = [name] if name else list(self._regions)
            for each in names:
                region = self._regions.pop(each, None)
                if region is None:
                    continue
                region.retired = True
                if region.users or not region.close():
                    self._retired.append(region)
                log.info("Unregistered shared memory region %s", each)

    def status(self, name: str = "") -> list[RegionStatus]:
        with self._lock:
            if not name:
                return [region.status for _, region in sorted(self._regions.items())]
            region = self._regions.get(name)
        if region is None:
            raise ServingError(Status.SHM_REGION_MISSING, f"region: {name}")
        return [region.status]

    def acquire(self, name: str) -> Region:
        """Hold a region for one request (release it with `release`)."""
        with self._lock:
            region = self._regions.get(name)
            if region is None:
                raise ServingError(Status.SHM_REGION_MISSING, f"region: {name}")
            region.users += 1
            return region

    def release(self, region: Region) -> None:
        with self._lock:
            region.users -= 1
            self._sweep()

    def _sweep(self) -> None:
        """Unmap the unregistered regions nothing holds any more (a view of one may outlive its request a moment:
        such a region is unmapped at a later call)."""
        if self._retired:
            self._retired = [region for region in self._retired if region.users or not region.close()]

    @property
    def mapped(self) -> int:
        """Regions still mapped: registered ones and unregistered ones still in use."""
        with self._lock:
            self._sweep()
            return len(self._regions) + len(self._retired)


@dataclass(slots=True)
class Target:
    """Where one output goes."""

    region: Region
    offset: int
    byte_size: int
    placed: int = 0
    """Bytes OpenVINO writes there itself (an array over the region was given to the model), else 0."""


@dataclass(slots=True)
class RequestMemory:
    """The regions one request holds, and where its outputs go; released once its answer is written."""

    regions: list[Region] = field(default_factory=list)
    outputs: dict[str, Target] = field(default_factory=dict)


def named_by(request: InferRequest) -> bool:
    """Whether an input or a requested output of `request` names a shared memory region."""
    if request.output_parameters and any(REGION in p for p in request.output_parameters.values()):
        return True
    return any(REGION in tensor.parameters for tensor in request.inputs if tensor.parameters)


def _place(parameters: dict[str, Any], what: str) -> tuple[str, int, int]:
    """(region, offset, byte size) of a tensor's shared memory parameters; both region and byte size are needed."""
    region, byte_size, offset = (parameters.get(key) for key in PARAMETERS)
    offset = 0 if offset is None else offset
    if not isinstance(region, str) or not region:
        raise ServingError(Status.SHM_REQUEST_INVALID, f"{what}: {REGION} must be a region name")
    if type(byte_size) is not int or type(offset) is not int:
        raise ServingError(
            Status.SHM_REQUEST_INVALID, f"{what}: {BYTE_SIZE} (and {OFFSET}, when given) must be integers"
        )
    return region, offset, byte_size


def attach(registry: SharedMemoryRegistry | None, request: InferRequest) -> RequestMemory:
    """Read the request's shared memory inputs (their `raw` becomes the region's bytes) and hold the regions of its
    inputs and outputs; the caller releases them with `release` once the answer is written."""
    if registry is None:
        raise ServingError(Status.SHM_NOT_ENABLED, "start the server with --allow_client_shm")
    held = RequestMemory()
    try:
        in_memory = 0
        for tensor in request.inputs:
            if REGION not in tensor.parameters:
                continue
            what = f"input {tensor.name}"
            name, offset, byte_size = _place(tensor.parameters, what)
            if tensor.contents is not None or tensor.raw is not None:
                raise ServingError(Status.SHM_REQUEST_INVALID, f"{what}: data both in shared memory and in the request")
            region = registry.acquire(name)
            held.regions.append(region)
            view = region.view(offset, byte_size, what)
            # Strings and images are parsed: from a snapshot, since the client may write to the region meanwhile.
            tensor.raw = bytes(view) if tensor.datatype == "BYTES" else view
            in_memory += 1
        if request.raw_input_count:
            if request.raw_input_count != len(request.inputs) - in_memory:
                raise ServingError(
                    Status.INVALID_MESSAGE_STRUCTURE,
                    f"Size of raw_input_contents: {request.raw_input_count} is different than number of inputs not "
                    f"in shared memory: {len(request.inputs) - in_memory}",
                )
            request.raw_input_count = len(request.inputs)
        for output, parameters in request.output_parameters.items():
            if REGION not in parameters:
                continue
            name, offset, byte_size = _place(parameters, f"output {output}")
            region = registry.acquire(name)
            held.regions.append(region)
            region.view(offset, byte_size, f"output {output}")  # bounds checked before inference
            held.outputs[output] = Target(region, offset, byte_size)
    except BaseException:
        release(registry, held)
        raise
    return held


def output_arrays(held: RequestMemory, specs: Mapping[str, TensorSpec]) -> dict[str, np.ndarray]:
    """Arrays over the regions of the outputs that OpenVINO can write in place: numeric outputs of a static shape, at
    least `IN_PLACE_MIN_BYTES`, that fit their target (the others are copied there after inference, or refused by
    `write_outputs`)."""
    arrays = {}
    for name, target in held.outputs.items():
        spec = specs.get(name)
        described = datatypes.DATATYPES.get(spec.datatype) if spec is not None else None
        if spec is None or described is None or described.dtype is None or not all(d.is_static for d in spec.shape):
            continue
        shape = tuple(d.metadata_value for d in spec.shape)
        size = math.prod(shape) * described.dtype.itemsize
        if IN_PLACE_MIN_BYTES <= size <= target.byte_size:
            view = target.region.view(target.offset, size, f"output {name}")
            arrays[name] = np.frombuffer(view, described.dtype).reshape(shape)
            target.placed = size
    return arrays


def write_outputs(held: RequestMemory, response: InferResponse) -> InferResponse:
    """Copy the outputs that go to shared memory into their regions (unless OpenVINO wrote them there already);
    those outputs keep their metadata and carry no bytes."""
    if not held.outputs:
        return response
    outputs = []
    for output in response.outputs:
        target = held.outputs.get(output.name)
        if target is None:
            outputs.append(output)
            continue
        size = target.placed if target.placed and not output.raw else len(output.raw)
        if size > target.byte_size:
            raise ServingError(
                Status.SHM_REGION_OUT_OF_BOUNDS,
                f"output {output.name}: {size} bytes do not fit in {target.byte_size} bytes at offset {target.offset} "
                f"of region {target.region.name}",
            )
        if output.raw:  # not written in place by OpenVINO
            target.region.view(target.offset, size, f"output {output.name}")[:] = output.raw
        placed = {REGION: target.region.name, BYTE_SIZE: size, OFFSET: target.offset}
        outputs.append(InferOutput(output.name, output.datatype, output.shape, b"", placed))
    response.outputs = outputs
    return response


def release(registry: SharedMemoryRegistry | None, held: RequestMemory) -> None:
    if registry is None:
        return
    for region in held.regions:
        registry.release(region)
    held.regions.clear()
