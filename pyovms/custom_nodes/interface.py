"""Custom nodes for pipelines: the `custom_node_library_config_list` libraries, of two kinds, behind one interface
(this module); `loader.py` tells which kind a file is and loads it.

- **C libraries**: a `base_path` that is a compiled shared library (told by the file's first bytes, or by a `.so`,
  `.dylib` or `.dll` name) is loaded through OVMS's C custom node interface, unchanged (`c_library.py`).
- **Python libraries** (`python_library.py`): a `.py` file or an importable module name implementing the same
  calls as module-level functions:

      def initialize(params: dict[str, str]) -> object          # optional: the node's state, given to the others
      def get_inputs_info(params, state) -> dict[str, tuple[str, list[int]]]     # name -> (KServe datatype, shape)
      def get_outputs_info(params, state) -> dict[str, tuple[str, list[int]]]    # -1 for a free dimension
      def execute(inputs: dict[str, np.ndarray], params, state) -> dict[str, np.ndarray]
      def deinitialize(state) -> None                           # optional

A relative `base_path` that names a file is read from config.json's directory. Each pipeline node gets its own instance
(`initialize`), whose `execute` runs on the user-code pool (`pyovms/scheduling/user_code.py`), so a slow node never
stops the server from answering. An instance that its pipeline retires is deinitialized once nothing uses it any more:
no request running on it, and (C) no output buffer of it still held. docs/custom_nodes.md has the details.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ServingError, Status
from ..scheduling.infer_requests import InlineChoice
from ..scheduling.user_code import describe, run_user_code
from ..tensors import datatypes
from ..tensors.messages import TensorSpec

log = logging.getLogger("pyovms.custom_nodes")

SHARED_LIBRARY_SUFFIXES = (".so", ".dylib", ".dll")


def named_like_a_library(path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith(SHARED_LIBRARY_SUFFIXES) or ".so." in name


def file_signature(path: str) -> tuple[int, ...] | None:
    """What tells a changed file from the one loaded (device, inode, size, modification time); None if no file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    """An entry of `custom_node_library_config_list`."""

    name: str
    base_path: str

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], config_dir: Path) -> LibraryConfig:
        """A relative `base_path` that names a file (a path, a library or `.py` name, or a file that is there) is
        read from config.json's directory; anything else is a module name."""
        base_path = entry["base_path"]
        if not Path(base_path).is_absolute():
            candidate = config_dir / base_path
            named = base_path.endswith(".py") or named_like_a_library(base_path) or os.sep in base_path
            if named or candidate.exists():
                base_path = str(candidate)
        return cls(entry["name"], base_path)


class Library(Protocol):
    """A loaded custom node library of either kind."""

    name: str
    base_path: str
    signature: tuple[int, ...] | None
    """The library file's `file_signature` when it was loaded (None for a module name)."""

    def instantiate(self, node_name: str, params: dict[str, str], inline_threshold_s: float = 0.0) -> CustomNode:
        """One pipeline node's instance: initialized, its inputs and outputs read. Executions averaging less than
        `inline_threshold_s` may run inline on the event loop (C libraries; 0: always on the user-code pool)."""
        ...


class CustomNode:
    """One pipeline node's instance of a library: its declared inputs and outputs, execution on the user-code pool,
    and a deinitialization deferred until nothing uses the instance."""

    def __init__(
        self, library_name: str, node_name: str, inputs: dict[str, TensorSpec], outputs: dict[str, TensorSpec]
    ):
        self.library_name = library_name
        self.node_name = node_name
        self.inputs = inputs
        self.outputs = outputs
        self._lock = threading.Lock()
        self._users = 0
        """Calls running (on pool threads) and, for C libraries, output buffers not given back yet."""
        self._retiring = False
        self._deinitialized = False
        self._label = f"execute of node {node_name} ({library_name})"
        self._choice: InlineChoice | None = None
        """Whether calls run inline; set by the kinds whose calls may (C libraries)."""

    async def execute(self, inputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
        """Run the library on `inputs` on the user-code pool (or inline, when its calls are measured to be shorter
        than the hand-off to a thread); the `wanted` outputs (data items), checked."""
        try:
            if self._choice is not None and self._choice.inline:
                return self._run(inputs, wanted)
            return await run_user_code("custom_node", self._run, inputs, wanted, label=self._label)
        except ServingError:
            raise
        except Exception as exc:  # what the library raised (Python) or reported
            log.exception("custom node %s (%s) failed", self.node_name, self.library_name)
            raise ServingError(Status.NODE_LIBRARY_EXECUTION_FAILED, describe(exc, typed=True)) from exc

    def _run(self, inputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
        """One execution (on a pool thread, or inline), holding the instance so that it is not deinitialized
        meanwhile."""
        self.acquire()
        started = time.perf_counter()
        try:
            produced = self._execute(inputs, wanted)
        finally:
            if self._choice is not None:  # the call's own time, without the hand-off to a thread
                self._choice.record(time.perf_counter() - started)
            self.release()
        for name in wanted:
            self._check_output(name, produced[name])
        return produced

    def _execute(self, inputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
        """The library's execution; every wanted output in the result, or a ServingError."""
        raise NotImplementedError

    def _check_output(self, name: str, array: np.ndarray) -> None:
        declared = self.outputs.get(name)
        datatype = datatypes.from_numpy(array.dtype) if array.dtype.kind in "biuf" else None
        if declared is not None and datatype != declared.datatype:
            raise ServingError(
                Status.NODE_LIBRARY_OUTPUT_INVALID,
                f"output {name} has datatype {datatype or array.dtype}; declared: {declared.datatype}",
            )

    def acquire(self) -> None:
        """Count a user of this instance (a running call, an output buffer)."""
        with self._lock:
            if self._deinitialized:
                raise ServingError(Status.PIPELINE_DEFINITION_NOT_LOADED_ANYMORE, f"node {self.node_name}")
            self._users += 1

    def release(self) -> None:
        """A user has finished; the last one after `close` deinitializes."""
        with self._lock:
            self._users -= 1
            finish = self._retiring and self._users == 0 and not self._deinitialized
            self._deinitialized = self._deinitialized or finish
        if finish:
            self._deinitialize()

    def close(self) -> None:
        """Retire the instance: deinitialize now if nothing uses it, else when the last user has finished."""
        with self._lock:
            self._retiring = True
            finish = self._users == 0 and not self._deinitialized
            self._deinitialized = self._deinitialized or finish
        if finish:
            self._deinitialize()

    @property
    def deinitialized(self) -> bool:
        return self._deinitialized

    def _deinitialize(self) -> None:
        raise NotImplementedError
