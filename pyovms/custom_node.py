"""Python custom nodes for pipelines: the `custom_node_library_config_list` libraries and the node interface.

A library is a Python file (`base_path` ending in `.py`, relative paths from config.json's directory) or an
importable module name. It implements, as module-level functions, the calls of OVMS's C custom node API:

    def initialize(params: dict[str, str]) -> object          # optional: the node's state, given to the others
    def get_inputs_info(params, state) -> dict[str, tuple[str, list[int]]]     # name -> (KServe datatype, shape)
    def get_outputs_info(params, state) -> dict[str, tuple[str, list[int]]]    # -1 for a free dimension
    def execute(inputs: dict[str, np.ndarray], params, state) -> dict[str, np.ndarray]
    def deinitialize(state) -> None                           # optional

`params` are the node's `params` from config.json. Each pipeline node gets its own `initialize`. `execute` runs on
a worker thread, so a slow node does not stop the server from answering other requests; it must return an array
for every output its node exposes. examples/custom_nodes/ holds two real libraries.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import tensors
from .errors import ServingError, Status
from .inference import TensorSpec
from .shapes import Dim
from .user_code import USER_ERRORS, describe, run_user_code

log = logging.getLogger("pyovms.custom_node")

REQUIRED = ("get_inputs_info", "get_outputs_info", "execute")


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    """An entry of `custom_node_library_config_list`."""

    name: str
    base_path: str

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], config_dir: Path) -> LibraryConfig:
        base_path = entry["base_path"]
        if base_path.endswith(".py") and not Path(base_path).is_absolute():
            base_path = str(config_dir / base_path)
        return cls(entry["name"], base_path)


class Library:
    """A loaded custom node library (a Python module with the interface above)."""

    def __init__(self, name: str, module: ModuleType) -> None:
        self.name = name
        self.module = module

    @classmethod
    def load(cls, config: LibraryConfig) -> Library:
        """Import the library; raise ServingError when it cannot be imported or lacks a required function."""
        try:
            if config.base_path.endswith(".py"):
                spec = importlib.util.spec_from_file_location(f"pyovms_custom_node_{config.name}", config.base_path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {config.base_path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(config.base_path)
        except USER_ERRORS as exc:
            raise ServingError(Status.PIPELINE_INCORRECT_LIBRARY, f"{config.name}: {describe(exc)}") from exc
        missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
        if missing:
            raise ServingError(Status.PIPELINE_INCORRECT_LIBRARY, f"{config.name}: no {', '.join(missing)}")
        return cls(config.name, module)


class CustomNode:
    """One pipeline node's instance of a library: its state, tensor metadata and execution."""

    def __init__(self, library: Library, node_name: str, params: dict[str, str]) -> None:
        self.library = library
        self.node_name = node_name
        self.params = params
        initialize = getattr(library.module, "initialize", None)
        try:
            self.state = initialize(params) if callable(initialize) else None
            self.inputs = self._specs(library.module.get_inputs_info(params, self.state))
            self.outputs = self._specs(library.module.get_outputs_info(params, self.state))
        except ServingError:
            raise
        except USER_ERRORS as exc:
            message = f"{library.name} in node {node_name}: {describe(exc)}"
            raise ServingError(Status.PIPELINE_INCORRECT_LIBRARY, message) from exc

    def _specs(self, info: Mapping[str, tuple[str, list[int]]]) -> dict[str, TensorSpec]:
        specs = {}
        for name, (datatype, shape) in sorted(info.items()):
            described = tensors.DATATYPES.get(datatype)
            if described is None:
                raise ServingError(
                    Status.PIPELINE_INCORRECT_LIBRARY, f"{self.library.name}: tensor {name} has datatype {datatype}"
                )
            dims = tuple(Dim.any() if d == -1 else Dim.static(d) for d in shape)
            specs[name] = TensorSpec(name, datatype, described.precision, dims, 0 if dims else None)
        return specs

    async def execute(self, inputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
        """Run the library's `execute` on a worker thread; check it returned every wanted output."""
        try:
            produced = await run_user_code("custom_node", self.library.module.execute, inputs, self.params, self.state)
        except Exception as exc:
            log.exception("custom node %s (%s) failed", self.node_name, self.library.name)
            raise ServingError(Status.NODE_LIBRARY_EXECUTION_FAILED, f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(produced, Mapping):
            raise ServingError(Status.NODE_LIBRARY_OUTPUT_INVALID, f"execute returned {type(produced).__name__}")
        outputs = {}
        for name in wanted:
            value = produced.get(name)
            if value is None:
                raise ServingError(Status.NODE_LIBRARY_MISSING_OUTPUT, name)
            if not isinstance(value, np.ndarray) or value.dtype == object:
                raise ServingError(Status.NODE_LIBRARY_OUTPUT_INVALID, f"{name} is not a numeric numpy array")
            outputs[name] = np.ascontiguousarray(value)
        return outputs

    def close(self) -> None:
        deinitialize = getattr(self.library.module, "deinitialize", None)
        if callable(deinitialize):
            try:
                deinitialize(self.state)
            except USER_ERRORS:
                log.exception("deinitialize of custom node %s failed", self.node_name)
