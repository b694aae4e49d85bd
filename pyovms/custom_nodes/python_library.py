"""Python custom node libraries: a `.py` file or an importable module with OVMS's custom node calls as functions
(the list is in `interface.py`), run on the user-code pool."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ServingError, Status
from ..scheduling.user_code import USER_ERRORS, describe
from ..tensors import datatypes
from ..tensors.messages import TensorSpec
from ..tensors.shapes import Dim
from .interface import CustomNode, LibraryConfig, file_signature

log = logging.getLogger("pyovms.custom_nodes")

REQUIRED = ("get_inputs_info", "get_outputs_info", "execute")
"""The functions a Python library must define."""


def _tensor_specs(library: str, declared: Mapping[str, tuple[str, list[int]]]) -> dict[str, TensorSpec]:
    """TensorSpecs of declared inputs or outputs: name -> (KServe datatype, shape with -1 for any size)."""
    specs = {}
    for name, (datatype, shape) in sorted(declared.items()):
        described = datatypes.DATATYPES.get(datatype)
        if described is None:
            raise ServingError(Status.PIPELINE_INCORRECT_LIBRARY, f"{library}: tensor {name} has datatype {datatype}")
        dims = tuple(Dim.any() if d == -1 else Dim.static(d) for d in shape)
        specs[name] = TensorSpec(name, datatype, described.precision, dims, 0 if dims else None)
    return specs


class PythonLibrary:
    """A Python custom node library: a module with the functions above."""

    def __init__(self, config: LibraryConfig, module: ModuleType, signature: tuple[int, ...] | None) -> None:
        self.name = config.name
        self.base_path = config.base_path
        self.module = module
        self.signature = signature

    @classmethod
    def load(cls, config: LibraryConfig) -> PythonLibrary:
        """Import the library; ServingError when it cannot be imported or lacks a required function."""
        signature = file_signature(config.base_path) if config.base_path.endswith(".py") else None
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
        return cls(config, module, signature)

    def instantiate(self, node_name: str, params: dict[str, str], inline_threshold_s: float = 0.0) -> PythonCustomNode:
        return PythonCustomNode(self, node_name, params)  # Python holds the GIL: always on the pool


class PythonCustomNode(CustomNode):
    """A node running a Python library: the state `initialize` returned, passed to every call."""

    def __init__(self, library: PythonLibrary, node_name: str, params: dict[str, str]) -> None:
        self.module = library.module
        self.params = params
        initialize: Callable[[dict[str, str]], Any] | None = getattr(self.module, "initialize", None)
        try:
            self.state = initialize(params) if callable(initialize) else None
            inputs = _tensor_specs(library.name, self.module.get_inputs_info(params, self.state))
            outputs = _tensor_specs(library.name, self.module.get_outputs_info(params, self.state))
        except ServingError:
            raise
        except USER_ERRORS as exc:
            message = f"{library.name} in node {node_name}: {describe(exc)}"
            raise ServingError(Status.PIPELINE_INCORRECT_LIBRARY, message) from exc
        super().__init__(library.name, node_name, inputs, outputs)

    def _execute(self, inputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
        produced = self.module.execute(inputs, self.params, self.state)
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

    def _deinitialize(self) -> None:
        deinitialize = getattr(self.module, "deinitialize", None)
        if callable(deinitialize):
            try:
                deinitialize(self.state)
            except USER_ERRORS:
                log.exception("deinitialize of custom node %s failed", self.node_name)
        self.state = None
