"""Python node handlers: the `OvmsPythonModel` class of a `handler_path` file, as OVMS's PythonExecutorCalculator
runs it (spec §6.4).

Each handler file is imported by its path under a module name of its own, so two handlers both called `model.py`
in different directories do not collide (they do in OVMS); the handler's directory is put on `sys.path` so that
modules beside it import as they do in OVMS. One `OvmsPythonModel` instance per node is made when the graph
definition loads and shared by every graph instance and stream; `finalize` runs when the definition is unloaded.
User code runs on worker threads, never on the event loop, so a slow handler does not stall other requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import ServingError, Status
from ...scheduling.user_code import USER_ERRORS

log = logging.getLogger("pyovms.graphs.python")


class PythonModel:
    """One node's `OvmsPythonModel` instance."""

    def __init__(self, node_name: str, instance: Any) -> None:
        self.node_name = node_name
        self.instance = instance

    @classmethod
    async def load(
        cls, node_name: str, handler_path: Path, input_names: list[str], output_names: list[str]
    ) -> PythonModel:
        """Import the handler and run `initialize`; any failure makes the graph unavailable (raise ServingError)."""
        if not handler_path.is_file():
            raise ServingError(
                Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR, f"node {node_name}: handler_path {handler_path} not found"
            )
        try:
            instance = await asyncio.to_thread(_instantiate, handler_path)
            initialize = getattr(instance, "initialize", None)
            if initialize is not None:
                kwargs = {
                    "node_name": node_name,
                    "input_names": list(input_names),
                    "output_names": list(output_names),
                    "base_path": str(handler_path.parent),
                }
                await asyncio.to_thread(initialize, kwargs)
        except ServingError:
            raise
        except USER_ERRORS as exc:
            log.error("Python node %s failed to initialize", node_name, exc_info=exc)
            raise ServingError(
                Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR,
                f"node {node_name}: {handler_path.name}: {type(exc).__name__}: {exc}",
            ) from exc
        if not callable(getattr(instance, "execute", None)):
            raise ServingError(
                Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR,
                f"node {node_name}: OvmsPythonModel in {handler_path.name} has no execute method",
            )
        return cls(node_name, instance)

    def execute(self, inputs: list[Any]) -> Any:
        """Call the user's `execute` (on a worker thread)."""
        return self.instance.execute(inputs)

    def finalize(self) -> None:
        """Call `finalize` if the handler has one; an exception is logged, as OVMS does."""
        finalize = getattr(self.instance, "finalize", None)
        if finalize is None:
            return
        try:
            finalize()
        except USER_ERRORS:
            log.exception("Python node %s: finalize failed", self.node_name)


def _instantiate(handler_path: Path) -> Any:
    path = handler_path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"pyovms_handler_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.append(directory)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    model_class = getattr(module, "OvmsPythonModel", None)
    if model_class is None:
        raise ServingError(
            Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR, f"{path.name} does not define class OvmsPythonModel"
        )
    return model_class()


EXHAUSTED = object()
"""What `next_outputs` returns once a generator has no more items."""


def next_outputs(generator: Iterator[Any]) -> Any:
    """The generator's next item, or EXHAUSTED (called on a worker thread)."""
    return next(generator, EXHAUSTED)
