"""The Python node: `PythonExecutorCalculator` running an `OvmsPythonModel` on the user-code pool."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ....errors import ServingError, Status
from ....scheduling.user_code import USER_ERRORS, describe, run_user_code
from ....tensors.node_tensor import Tensor
from ..graph_config import NodeConfig
from ..python_node import EXHAUSTED, PythonModel, next_outputs
from ..runtime import Inputs, NodeRun
from .base import Calculator, LoadContext, config_error, execution_error, node_options, side_packet_name

log = logging.getLogger("pyovms.graphs")

PYTHON_RESOURCES = "PYTHON_NODE_RESOURCES"
LOOPBACK = "LOOPBACK:0"
PYTHON_NODE = "python_node"
"""The user-code pool Python handlers run on."""
GENERATOR_CLOSE_TIMEOUT_S = 5.0
"""How long a graph run waits for a generator to close once its run ends. A generator step still hung (its caller
gone) or a `finally` that hangs must not keep the run alive; the close then happens on its written-off thread,
once the hung step returns."""


class PythonExecutorCalculator(Calculator):
    """Runs an `OvmsPythonModel`: regular (`return`) and generative (`yield`, with a LOOPBACK back edge) modes."""

    name = "PythonExecutorCalculator"

    def __init__(self, config: NodeConfig, shared: PythonModel) -> None:
        super().__init__(config, shared)
        self.model = shared
        self.generator: Iterator[Any] | None = None
        self._generator_lock = threading.Lock()
        """Held while the generator runs on a worker thread, so closing it waits for a `next` in flight."""
        self.timestamp = 0
        self.loopback = any(ref.tag_index == LOOPBACK for ref in config.output_streams)
        self.data_inputs = sorted(
            (ref for ref in config.input_streams if ref.tag != "LOOPBACK"), key=lambda ref: ref.tag_index
        )
        self.outputs = {ref.name: ref.tag_index for ref in config.output_streams if ref.tag != "LOOPBACK"}

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> PythonModel:
        if not config.name:
            raise config_error(config, "a PythonExecutorCalculator node must have a name")
        if side_packet_name(config, PYTHON_RESOURCES) is None:
            raise config_error(config, f"input_side_packet {PYTHON_RESOURCES}:py is required")
        options = node_options(config, "PythonExecutorCalculatorOptions")
        if options is None or not options.handler_path:
            raise config_error(config, "handler_path is not set in PythonExecutorCalculatorOptions")
        handler = Path(options.handler_path)
        if not handler.is_absolute():
            handler = context.base_path / handler
        inputs = [ref.name for ref in config.input_streams if ref.tag != "LOOPBACK"]
        outputs = [ref.name for ref in config.output_streams if ref.tag != "LOOPBACK"]
        return await PythonModel.load(config.name, handler, inputs, outputs)

    @classmethod
    def unload(cls, shared: PythonModel) -> None:
        shared.finalize()

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        try:
            if LOOPBACK in inputs and len(inputs) == 1:
                await self._generate(node)
                return
            if self.generator is not None:
                raise ServingError(Status.MEDIAPIPE_NODE_BUSY, f"node {self.config.name}")
            arguments = [inputs[ref.tag_index].payload for ref in self.data_inputs if ref.tag_index in inputs]
            for item in arguments:
                if not isinstance(item, Tensor):
                    raise ServingError(
                        Status.MEDIAPIPE_EXECUTION_ERROR,
                        f"node {self.config.name}: input packets must hold pyovms.Tensor (OVMS_PY_TENSOR streams)",
                    )
            result = await run_user_code(PYTHON_NODE, self._call, arguments)
            self.timestamp = timestamp
            if inspect.isgenerator(result):
                if not self.loopback:
                    raise ServingError(
                        Status.MEDIAPIPE_EXECUTION_ERROR,
                        f"node {self.config.name}: execute yielded, but the node has no LOOPBACK stream",
                    )
                self.generator = result
                await self._generate(node, first=True)
                return
            self._emit(node, result, timestamp)
        except ServingError as exc:
            raise execution_error(self.config, exc) from exc

    def _call(self, arguments: list[Tensor]) -> Any:
        try:
            return self.model.execute(arguments)
        except USER_ERRORS as exc:
            raise self._user_error(exc) from exc

    def _user_error(self, exc: BaseException) -> ServingError:
        log.error("Python node %s: execute failed", self.config.name, exc_info=exc)
        return ServingError(Status.MEDIAPIPE_EXECUTION_ERROR, f"node {self.config.name}: {describe(exc, typed=True)}")

    async def _generate(self, node: NodeRun, first: bool = False) -> None:
        """The generator's next outputs, at the input timestamp and then one more per yield."""
        if self.generator is None:
            return
        if not first and any(port.queue for port in node.ports if port.tag_index != LOOPBACK):
            raise ServingError(Status.MEDIAPIPE_NODE_BUSY, f"node {self.config.name}")
        try:
            item = await run_user_code(PYTHON_NODE, self._next, self.generator)
        except Exception as exc:
            self.generator = None
            raise self._user_error(exc) from exc
        if item is EXHAUSTED:
            self.generator = None
            return
        if not first:
            self.timestamp += 1
        self._emit(node, item, self.timestamp)
        node.emit(LOOPBACK, True, self.timestamp)

    def _emit(self, node: NodeRun, result: Any, timestamp: int) -> None:
        if not isinstance(result, list):
            raise ServingError(
                Status.MEDIAPIPE_EXECUTION_ERROR,
                f"node {self.config.name}: execute must return or yield a list of pyovms.Tensor, "
                f"got {type(result).__name__}",
            )
        for tensor in result:
            if not isinstance(tensor, Tensor):
                raise ServingError(
                    Status.MEDIAPIPE_EXECUTION_ERROR,
                    f"node {self.config.name}: outputs must be pyovms.Tensor, got {type(tensor).__name__}",
                )
            tag_index = self.outputs.get(tensor.name)
            if tag_index is None:
                raise ServingError(
                    Status.MEDIAPIPE_EXECUTION_ERROR,
                    f"node {self.config.name}: output tensor {tensor.name} has no output stream; "
                    f"streams: {', '.join(sorted(self.outputs))}",
                )
            node.emit(tag_index, tensor, timestamp)

    def _next(self, generator: Iterator[Any]) -> Any:
        with self._generator_lock:
            return next_outputs(generator)

    def _close(self, generator: Iterator[Any]) -> None:
        with self._generator_lock:
            generator.close()  # type: ignore[attr-defined]

    async def close(self, node: NodeRun) -> None:
        if self.generator is None:
            return
        generator, self.generator = self.generator, None
        try:
            await asyncio.wait_for(run_user_code(PYTHON_NODE, self._close, generator), GENERATOR_CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "Python node %s: its generator did not close within %.0f s (a step or its finally is still running); "
                "the graph run ends without waiting",
                self.config.name,
                GENERATOR_CLOSE_TIMEOUT_S,
            )
