"""C custom node libraries: OVMS's compiled `.so` libraries, called through ctypes with OVMS's semantics.

- Loading (`CLibrary.load`): `dlopen` with the six symbols of `abi.SIGNATURES`. A file that does not open
  is `Custom node library failed to open`, a missing symbol `Custom node library failed to load symbol`; the
  pipelines naming the library are then unavailable with that message. Symbols are bound at open (RTLD_NOW), so a
  library missing one of its own dependencies fails here rather than at its first call.
- One `CCustomNode` per pipeline node: `initialize` with the node's params, then `getInputsInfo`/`getOutputsInfo`
  (dimension 0 is any size; every info array and its dims are given back through `release`); `deinitialize` once
  the node is retired and nothing uses it.
- `execute` runs on the user-code pool; ctypes releases the GIL for the call, so libraries run in parallel (a node
  whose calls take less than the hand-off to a thread runs them inline, `scheduling.InlineChoice`). Inputs
  are pointers into the arrays the pipeline already holds (no copy; a non-contiguous view is made contiguous
  first). Outputs stay in the library's buffers: each becomes a read-only numpy array over them whose owner gives
  the buffer back through `release` when the last view of it goes, and dims and the outputs array are given back at
  once. Every check of an output (OVMS's order and statuses) gives back what it rejects.
- A library file that changed on disk since it was loaded is opened again under a fresh name, since `dlopen` of a
  path already open returns the copy in memory. Libraries are never closed (`dlclose`), as in OVMS: code of a
  retired library may still be running on a written-off thread.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import math
import os
import shutil
import tempfile
import threading
from itertools import count

import numpy as np

from ..errors import ServingError, Status
from ..scheduling.infer_requests import InlineChoice
from ..tensors import datatypes
from ..tensors.messages import TensorSpec
from ..tensors.shapes import Dim
from . import abi
from .interface import CustomNode, LibraryConfig, file_signature

log = logging.getLogger("pyovms.custom_nodes")

_INT64_MAX = (1 << 63) - 1


class CLibrary:
    """An opened C custom node library and its six functions."""

    def __init__(
        self,
        config: LibraryConfig,
        handle: ctypes.CDLL,
        functions: dict[str, ctypes._CFuncPtr],
        signature: tuple[int, ...] | None,
    ):
        self.name = config.name
        self.handle = handle
        self.base_path = config.base_path
        self.signature = signature
        self.initialize = functions["initialize"]
        self.deinitialize = functions["deinitialize"]
        self.execute = functions["execute"]
        self.get_inputs_info = functions["getInputsInfo"]
        self.get_outputs_info = functions["getOutputsInfo"]
        self.release = functions["release"]

    @classmethod
    def load(cls, config: LibraryConfig, previous: object | None = None) -> CLibrary:
        """Open the library; when `previous` opened the same path before and the file has changed, open the new file
        under a fresh name. ServingError with OVMS's statuses when it cannot be opened or lacks a symbol."""
        signature = file_signature(config.base_path)
        reopen = isinstance(previous, CLibrary) and previous.base_path == config.base_path
        log.info("Loading custom node library name: %s; base_path: %s", config.name, config.base_path)
        try:
            handle = _open_fresh(config.base_path) if reopen else _open(config.base_path)
        except OSError as exc:
            log.error(
                "Library name: %s failed to open base_path: %s with error: %s", config.name, config.base_path, exc
            )
            raise ServingError(Status.NODE_LIBRARY_LOAD_FAILED_OPEN, f"{config.name}: {exc}") from exc
        if isinstance(previous, CLibrary) and handle._handle == previous.handle._handle:
            log.warning(
                "Custom node library %s: %s changed in place, and the loader returned the copy already loaded; "
                "replace library files by renaming a new file into place",
                config.name,
                config.base_path,
            )
        functions = {}
        for symbol, argtypes in abi.SIGNATURES.items():
            try:
                function = handle[symbol]
            except AttributeError as exc:
                log.error("Failed to load library name: %s with error: %s", config.name, exc)
                raise ServingError(Status.NODE_LIBRARY_LOAD_FAILED_SYM, f"{config.name}: {symbol}") from exc
            function.argtypes = argtypes
            function.restype = ctypes.c_int
            functions[symbol] = function
        log.info("Successfully loaded custom node library name: %s; base_path: %s", config.name, config.base_path)
        return cls(config, handle, functions, signature)

    def instantiate(self, node_name: str, params: dict[str, str], inline_threshold_s: float = 0.0) -> CCustomNode:
        return CCustomNode(self, node_name, params, inline_threshold_s)


def _open(path: str) -> ctypes.CDLL:
    return ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)


_fresh_names = count(1)
_fresh_directory: str | None = None
_fresh_lock = threading.Lock()


def _open_fresh(path: str) -> ctypes.CDLL:
    """Open `path` through a symlink of a name never opened before: `dlopen` matches libraries by the name they were
    opened with, so the same path would return the copy loaded before the file changed. (A file rewritten in place,
    not replaced, keeps its inode and still gets the old copy: replace library files by renaming new ones in.)"""
    global _fresh_directory
    with _fresh_lock:
        if _fresh_directory is None:
            _fresh_directory = tempfile.mkdtemp(prefix="pyovms-custom-nodes-")
            atexit.register(shutil.rmtree, _fresh_directory, True)
        link = os.path.join(_fresh_directory, f"{next(_fresh_names)}-{os.path.basename(path)}")
    os.symlink(os.path.abspath(path), link)
    try:
        return _open(link)
    finally:
        os.unlink(link)  # the mapping stays


class CCustomNode(CustomNode):
    """One pipeline node's instance of a C library: its internal manager, params and declared tensors."""

    def __init__(self, library: CLibrary, node_name: str, params: dict[str, str], inline_threshold_s: float) -> None:
        self.library = library
        self._strings = [(key.encode(), value.encode()) for key, value in params.items()]
        self._param_count = len(self._strings)
        self._params = (abi.CustomNodeParam * self._param_count)(*self._strings) if self._strings else None
        manager = ctypes.c_void_p()
        where = f"node {node_name} library {library.name}"
        code = library.initialize(ctypes.byref(manager), self._params, self._param_count)
        if code != 0:
            raise ServingError(Status.NODE_LIBRARY_INITIALIZE_FAILED, f"{where}: initialize returned {code}")
        self._manager = manager.value
        try:
            inputs = self._info(library.get_inputs_info, "getInputsInfo", where)
            outputs = self._info(library.get_outputs_info, "getOutputsInfo", where)
        except BaseException:
            self._call_deinitialize()
            raise
        super().__init__(library.name, node_name, inputs, outputs)
        self._input_names: dict[str, bytes] = {}
        self._choice = InlineChoice(inline_threshold_s, f"custom node {node_name} ({library.name})")

    def _release(self, pointer: int | None) -> None:
        if pointer:
            code = self.library.release(pointer, self._manager)
            if code != 0:
                log.warning("release in custom node %s (%s) returned %d", self.node_name, self.library_name, code)

    def _info(self, function: ctypes._CFuncPtr, symbol: str, where: str) -> dict[str, TensorSpec]:
        """Call getInputsInfo or getOutputsInfo; give back every array it returned."""
        info = ctypes.POINTER(abi.CustomNodeTensorInfo)()
        found = ctypes.c_int()
        code = function(ctypes.byref(info), ctypes.byref(found), self._params, self._param_count, self._manager)
        if code != 0:
            raise ServingError(Status.NODE_LIBRARY_METADATA_FAILED, f"{where}: {symbol} returned {code}")
        if not info:
            raise ServingError(Status.NODE_LIBRARY_OUTPUTS_CORRUPTED, f"{where}: {symbol}")
        address = ctypes.addressof(info.contents)
        try:
            if found.value <= 0:
                raise ServingError(Status.NODE_LIBRARY_OUTPUTS_CORRUPTED_COUNT, f"{where}: {symbol}: {found.value}")
            specs: dict[str, TensorSpec] = {}
            failure: ServingError | None = None
            for i in range(found.value):  # every entry is visited, so that every dims array is given back
                try:
                    spec = self._declared(info[i], f"{where}: {symbol}")
                except ServingError as exc:
                    failure = failure or exc
                    continue
                if spec is not None:
                    specs[spec.name] = spec
            if failure is not None:
                raise failure
            return dict(sorted(specs.items()))
        finally:
            self._release(address)

    def _declared(self, item: abi.CustomNodeTensorInfo, where: str) -> TensorSpec | None:
        """One info entry as a TensorSpec (its dims given back); None for an entry OVMS skips (no name or dims)."""
        dims_address = ctypes.cast(item.dims, ctypes.c_void_p).value
        try:
            if item.name is None or not dims_address or item.dimsCount == 0:
                log.warning("%s: an entry without a name or dimensions is ignored", where)
                return None
            name = item.name.decode(errors="replace")
            datatype = abi.PRECISION_DATATYPES.get(item.precision)
            if datatype is None:
                raise ServingError(
                    Status.NODE_LIBRARY_INVALID_PRECISION, f"{where}: {name} has precision {item.precision}"
                )
            if item.dimsCount > abi.MAX_DIMS:
                raise ServingError(Status.NODE_LIBRARY_INVALID_SHAPE, f"{where}: {name}: {item.dimsCount} dimensions")
            values = item.dims[: item.dimsCount]
            if any(d > _INT64_MAX for d in values):
                raise ServingError(Status.NODE_LIBRARY_INVALID_SHAPE, f"{where}: {name}: {values}")
            dims = tuple(Dim.static(d) if d else Dim.any() for d in values)
            return TensorSpec(name, datatype, datatypes.DATATYPES[datatype].precision, dims, 0)
        finally:
            self._release(dims_address)

    def _execute(self, inputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
        """One call of `execute`; the wanted outputs as arrays over the library's buffers."""
        count_in = len(inputs)
        structs = (abi.CustomNodeTensor * count_in)()
        held = []  # what the structs point into, alive for the call
        for i, (name, array) in enumerate(inputs.items()):
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            dims = (ctypes.c_uint64 * array.ndim)(*array.shape)
            held.append((array, dims))
            encoded = self._input_names.get(name)
            if encoded is None:
                encoded = self._input_names[name] = name.encode()
            tensor = structs[i]
            tensor.name = encoded
            tensor.data = array.__array_interface__["data"][0]
            tensor.dataBytes = array.nbytes
            tensor.dims = dims
            tensor.dimsCount = array.ndim
            tensor.precision = abi.DTYPE_PRECISIONS.get(array.dtype.str, abi.UNSPECIFIED)
        outputs = ctypes.POINTER(abi.CustomNodeTensor)()
        produced = ctypes.c_int()
        code = self.library.execute(
            structs if count_in else None,
            count_in,
            ctypes.byref(outputs),
            ctypes.byref(produced),
            self._params,
            self._param_count,
            self._manager,
        )
        del held
        if code != 0:  # the library keeps what it allocated (OVMS's contract: it cleans up after a failure)
            log.error("Node %s has failed custom node execution with return code: %d", self.node_name, code)
            raise ServingError(Status.NODE_LIBRARY_EXECUTION_FAILED, f"library {self.library_name} returned {code}")
        if not outputs:
            raise ServingError(Status.NODE_LIBRARY_OUTPUTS_CORRUPTED, f"library {self.library_name}")
        return self._read_outputs(outputs, produced.value, wanted)

    def _read_outputs(
        self, outputs: ctypes._Pointer[abi.CustomNodeTensor], found: int, wanted: list[str]
    ) -> dict[str, np.ndarray]:
        """Every returned tensor checked and wrapped, or given back; the outputs array given back; the first
        failure raised after all that."""
        arrays: dict[str, np.ndarray] = {}
        returned: list[str] = []
        failure: ServingError | None = None
        try:
            if found <= 0:
                raise ServingError(
                    Status.NODE_LIBRARY_OUTPUTS_CORRUPTED_COUNT, f"library {self.library_name}: {found} outputs"
                )
            for i in range(found):
                try:
                    name, array = self._wrap(outputs[i])
                except ServingError as exc:  # a missing name overrides an earlier failure, as in OVMS
                    missing_name = exc.status == Status.NODE_LIBRARY_OUTPUT_MISSING_NAME
                    failure = exc if missing_name else failure or exc
                    continue
                returned.append(name)
                if name in wanted:
                    arrays[name] = array
        finally:
            self._release(ctypes.addressof(outputs.contents))
        if failure is not None:
            raise failure
        missing = [name for name in wanted if name not in arrays]
        if missing:
            raise ServingError(
                Status.NODE_LIBRARY_MISSING_OUTPUT, f"{', '.join(missing)}; returned: {', '.join(sorted(returned))}"
            )
        return arrays

    def _wrap(self, tensor: abi.CustomNodeTensor) -> tuple[str, np.ndarray]:
        """A returned tensor as a read-only array over its buffer (given back when the array goes), after OVMS's
        checks: precision, shape, content size, name. What is rejected is given back at once."""
        data = tensor.data
        dims_address = ctypes.cast(tensor.dims, ctypes.c_void_p).value
        label = tensor.name.decode(errors="replace") if tensor.name is not None else "(no name)"
        try:
            precision = tensor.precision
            if precision not in abi.PRECISION_DATATYPES:
                raise ServingError(Status.NODE_LIBRARY_INVALID_PRECISION, f"output {label} has precision {precision}")
            if not dims_address or tensor.dimsCount == 0 or tensor.dimsCount > abi.MAX_DIMS:
                why = "shape handle is null" if not dims_address else f"{tensor.dimsCount} dimensions"
                raise ServingError(Status.NODE_LIBRARY_INVALID_SHAPE, f"output {label}: {why}")
            shape = tuple(tensor.dims[: tensor.dimsCount])
            dtype = abi.PRECISION_DTYPES[precision]
            expected = math.prod(shape) * dtype.itemsize
            if not data or tensor.dataBytes != expected:
                why = "data handle is null" if not data else f"expected: {expected} bytes vs {tensor.dataBytes}"
                raise ServingError(Status.NODE_LIBRARY_INVALID_CONTENT_SIZE, f"output {label}: {why}")
            if tensor.name is None:
                raise ServingError(Status.NODE_LIBRARY_OUTPUT_MISSING_NAME, f"library {self.library_name}")
            owner = _Buffer(self, data, shape, dtype.str)
            data = None  # the owner gives it back now
            return label, np.asarray(owner)
        finally:
            self._release(dims_address)
            self._release(data)

    def _call_deinitialize(self) -> None:
        code = self.library.deinitialize(self._manager)
        if code != 0:
            log.error("deinitialize of custom node %s (%s) returned %d", self.node_name, self.library.name, code)

    def _deinitialize(self) -> None:
        self._call_deinitialize()


class _Buffer:
    """An output buffer of a library, lent to numpy (`__array_interface__`, read-only); given back through
    `release` when numpy lets go of it, and counted as a user of its node until then."""

    __slots__ = ("__array_interface__", "_node", "_pointer")

    def __init__(self, node: CCustomNode, pointer: int, shape: tuple[int, ...], typestr: str) -> None:
        node.acquire()
        self._node = node
        self._pointer = pointer
        self.__array_interface__ = {"data": (pointer, True), "shape": shape, "typestr": typestr, "version": 3}

    def __del__(self) -> None:
        node, self._node = self._node, None
        if node is not None:
            node._release(self._pointer)
            node.release()
