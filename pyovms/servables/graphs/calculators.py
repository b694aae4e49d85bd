"""The calculators a graph node may name, and what each does with its packets (spec §6.4, §6.5).

A calculator class is prepared once per node when the graph definition loads (`prepare`: check the node's
configuration, load shared resources such as a Python handler) and instantiated once per graph run, so the state
of one stream (a generator in progress) stays with that stream. A node naming a calculator missing from
`CALCULATORS` makes the whole graph fail to load.

Packets carry numpy arrays on `OVTENSOR` (or untagged) streams, `pyovms.Tensor` on `OVMS_PY_TENSOR` streams, and
plain values for side packets.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...errors import ServingError, Status
from ...repository.registry import check_available, parse_version
from ...scheduling.user_code import USER_ERRORS, describe, run_user_code
from ...tensors import datatypes
from ...tensors.node_tensor import Tensor
from ...tensors.validation import check_dims
from .graph_config import NodeConfig
from .python_node import EXHAUSTED, PythonModel, next_outputs
from .runtime import Inputs, NodeRun

if TYPE_CHECKING:
    from ...repository.registry import Repository

log = logging.getLogger("pyovms.graphs")

PYTHON_RESOURCES = "PYTHON_NODE_RESOURCES"
LOOPBACK = "LOOPBACK:0"
PYTHON_NODE = "python_node"
"""The user-code pool Python handlers run on."""
GENERATOR_CLOSE_TIMEOUT_S = 5.0
"""How long a graph run waits for a generator to close once its run ends. A generator step still hung (its caller
gone) or a `finally` that hangs must not keep the run alive; the close then happens on its written-off thread,
once the hung step returns."""


@dataclass(slots=True)
class LoadContext:
    """What a node may use while its graph definition loads."""

    base_path: Path
    """The graph's directory: relative handler paths are resolved against it."""
    repository: Repository


def _config_error(node: NodeConfig, text: str) -> ServingError:
    return ServingError(Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR, f"node {node.name or node.calculator}: {text}")


def _execution_error(node: NodeConfig, exc: ServingError) -> ServingError:
    """A node's failure as the graph reports it: `Mediapipe execution failed. MP status - node x: <reason>`."""
    if exc.status in (Status.MEDIAPIPE_EXECUTION_ERROR, Status.MEDIAPIPE_NODE_BUSY):
        return exc
    return ServingError(Status.MEDIAPIPE_EXECUTION_ERROR, f"node {node.name or node.calculator}: {exc.message}")


def _options(node: NodeConfig, expected: str) -> Any:
    options = node.options
    if options is None:
        return None
    if options.DESCRIPTOR.name != expected:
        raise _config_error(node, f"options of type {options.DESCRIPTOR.full_name}; expected mediapipe.{expected}")
    return options


def _side_packet_name(node: NodeConfig, tag: str) -> str | None:
    for ref in node.input_side_packets:
        if ref.tag == tag:
            return ref.name
    return None


class Calculator:
    """Base class: a node's behaviour in one graph run."""

    name: ClassVar[str]

    def __init__(self, config: NodeConfig, shared: Any) -> None:
        self.config = config
        self.shared = shared

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        """Check the node's configuration at load; return what every run of the node shares."""
        return None

    def start(self, node: NodeRun) -> None:
        """Called when the run starts, before any packet flows (set output side packets here)."""

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        raise NotImplementedError

    async def close(self, node: NodeRun) -> None:
        """Called when every input is done."""

    @classmethod
    def unload(cls, shared: Any) -> None:
        """Release what `prepare` made, when the graph definition is unloaded."""


class PassThroughCalculator(Calculator):
    """Input i goes to output i unchanged."""

    name = "PassThroughCalculator"

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        if len(config.input_streams) != len(config.output_streams):
            raise _config_error(config, "needs as many output streams as input streams")
        return None

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        for source, target in zip(self.config.input_streams, self.config.output_streams, strict=True):
            packet = inputs.get(source.tag_index)
            if packet is not None:
                node.emit(target.tag_index, packet.payload, timestamp)


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
            raise _config_error(config, "a PythonExecutorCalculator node must have a name")
        if _side_packet_name(config, PYTHON_RESOURCES) is None:
            raise _config_error(config, f"input_side_packet {PYTHON_RESOURCES}:py is required")
        options = _options(config, "PythonExecutorCalculatorOptions")
        if options is None or not options.handler_path:
            raise _config_error(config, "handler_path is not set in PythonExecutorCalculatorOptions")
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
            raise _execution_error(self.config, exc) from exc

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


@dataclass(frozen=True, slots=True)
class Session:
    """A served model as a graph sees it (the `SESSION` side packet)."""

    repository: Repository
    servable_name: str
    servable_version: str


class OpenVINOModelServerSessionCalculator(Calculator):
    """Names a served model; its `SESSION` output side packet is what inference nodes run."""

    name = "OpenVINOModelServerSessionCalculator"

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Session:
        return _session(config, context, "OpenVINOModelServerSessionCalculatorOptions")

    def start(self, node: NodeRun) -> None:
        session: Session = self.shared
        _check_session(self.config, session)
        for ref in self.config.output_side_packets:
            if ref.tag == "SESSION":
                node.graph.side_packets[ref.name] = session


def _session(config: NodeConfig, context: LoadContext, options_name: str) -> Session:
    options = _options(config, options_name)
    if options is None or not options.servable_name:
        raise _config_error(config, f"servable_name is not set in {options_name}")
    try:
        parse_version(options.servable_version)
    except ServingError as exc:
        raise _config_error(config, f"servable_version {options.servable_version!r} is not a number") from exc
    return Session(context.repository, options.servable_name, options.servable_version)


def _check_session(config: NodeConfig, session: Session) -> None:
    """The model must be served when a run starts (else the graph's precondition fails, as in OVMS)."""
    try:
        entry = session.repository.find_version(session.servable_name, session.servable_version, zero_is_default=True)
        check_available(entry)
    except ServingError as exc:
        raise ServingError(
            Status.MEDIAPIPE_PRECONDITION_FAILED, f"node {config.name or config.calculator}: {exc.message}"
        ) from exc


class OpenVINOInferenceCalculator(Calculator):
    """Runs the `SESSION` model on the node's input tensors (tags mapped to tensor names by the options)."""

    name = "OpenVINOInferenceCalculator"
    options_name = "OpenVINOInferenceCalculatorOptions"

    def __init__(self, config: NodeConfig, shared: Any) -> None:
        super().__init__(config, shared)
        options = _options(config, self.options_name)
        to_input = dict(options.tag_to_input_tensor_names) if options is not None else {}
        to_output = dict(options.tag_to_output_tensor_names) if options is not None else {}
        self.input_names = {ref.tag_index: to_input.get(ref.tag, ref.tag) for ref in config.input_streams}
        self.output_names = {ref.tag_index: to_output.get(ref.tag, ref.tag) for ref in config.output_streams}
        self.session: Session | None = shared if isinstance(shared, Session) else None

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        _options(config, cls.options_name)
        if _side_packet_name(config, "SESSION") is None:
            raise _config_error(config, "input_side_packet SESSION:<name> is required")
        return None

    def start(self, node: NodeRun) -> None:
        if self.session is None:
            name = _side_packet_name(self.config, "SESSION")
            session = node.graph.side_packets.get(name or "")
            if not isinstance(session, Session):
                raise ServingError(
                    Status.MEDIAPIPE_GRAPH_START_ERROR, f"node {self.config.name}: no session in side packet {name}"
                )
            self.session = session

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        session = self.session
        assert session is not None
        try:
            entry = await session.repository.serving_version(session.servable_name, session.servable_version)
            servable = entry.servable
            assert servable is not None
            feed = {}
            for tag_index, packet in inputs.items():
                name = self.input_names[tag_index]
                feed[name] = self._input(servable.inputs, name, packet.payload)
            missing = sorted(set(servable.inputs) - set(feed))
            if missing:
                raise ServingError(Status.INVALID_NO_OF_INPUTS, f"model {servable.name} needs {', '.join(missing)}")
            wanted = sorted(set(self.output_names.values()))
            unknown = [name for name in wanted if name not in servable.outputs]
            if unknown:
                raise ServingError(Status.INVALID_MISSING_OUTPUT, f"model {servable.name} has no output {unknown[0]}")
            outputs = {output.name: output for output in await servable.infer(feed, wanted)}
        except ServingError as exc:
            raise _execution_error(self.config, exc) from exc
        for tag_index, name in self.output_names.items():
            node.emit(tag_index, outputs[name].as_numpy(), timestamp)

    def _input(self, specs: Any, name: str, payload: Any) -> np.ndarray:
        spec = specs.get(name)
        if spec is None:
            raise ServingError(Status.INVALID_MISSING_INPUT, f"model has no input {name}")
        if not isinstance(payload, np.ndarray):
            raise ServingError(
                Status.INVALID_PRECISION,
                f"input {name} must be an OVTENSOR packet, got {type(payload).__name__} "
                "(convert pyovms.Tensor with PyTensorOvTensorConverterCalculator)",
            )
        datatype = datatypes.from_numpy(payload.dtype)
        if datatype != spec.datatype:
            raise ServingError(
                Status.INVALID_PRECISION, f"Expected: {spec.precision}; Actual: {datatype}; input name: {name}"
            )
        check_dims(spec, payload.shape, f"input name: {name}")
        return payload


class OVMSOVCalculator(OpenVINOInferenceCalculator):
    """A session and an inference in one node (`OVMSCalculatorOptions`)."""

    name = "OVMSOVCalculator"
    options_name = "OVMSCalculatorOptions"

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Session:
        return _session(config, context, cls.options_name)

    def start(self, node: NodeRun) -> None:
        assert self.session is not None
        _check_session(self.config, self.session)


class PyTensorOvTensorConverterCalculator(Calculator):
    """`OVMS_PY_TENSOR` <-> `OVTENSOR`: one input, one output."""

    name = "PyTensorOvTensorConverterCalculator"

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        if len(config.input_streams) != 1 or len(config.output_streams) != 1:
            raise _config_error(config, "needs exactly one input stream and one output stream")
        tags = (config.input_streams[0].tag, config.output_streams[0].tag)
        if tags not in (("OVMS_PY_TENSOR", "OVTENSOR"), ("OVTENSOR", "OVMS_PY_TENSOR")):
            raise _config_error(config, "the stream tags must be OVMS_PY_TENSOR and OVTENSOR")
        if tags[1] == "OVMS_PY_TENSOR":
            options = _options(config, "PyTensorOvTensorConverterCalculatorOptions")
            if options is None or "OVMS_PY_TENSOR" not in options.tag_to_output_tensor_names:
                raise _config_error(config, "tag_to_output_tensor_names must name the OVMS_PY_TENSOR output")
            return options.tag_to_output_tensor_names["OVMS_PY_TENSOR"]
        return None

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        packet = inputs[self.config.input_streams[0].tag_index]
        target = self.config.output_streams[0].tag_index
        if self.shared is not None:  # to a Python tensor named by the options
            node.emit(target, Tensor(self.shared, np.ascontiguousarray(packet.payload)), timestamp)
            return
        tensor = packet.payload
        datatype = datatypes.DATATYPES.get(tensor.datatype)
        if datatype is None or datatype.dtype is None:
            raise ServingError(
                Status.MEDIAPIPE_EXECUTION_ERROR,
                f"node {self.config.name or self.name}: a {tensor.datatype} tensor cannot become an OpenVINO tensor",
            )
        array = np.frombuffer(tensor, dtype=np.uint8).view(datatype.dtype).reshape(tensor.shape)
        node.emit(target, array, timestamp)


class SidePacketToStreamCalculator(Calculator):
    """Sends the input side packet's value on `AT_TICK` at every `TICK` packet's timestamp."""

    name = "SidePacketToStreamCalculator"

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        if len(config.input_side_packets) != 1:
            raise _config_error(config, "needs exactly one input side packet")
        if [r.tag for r in config.input_streams] != ["TICK"] or [r.tag for r in config.output_streams] != ["AT_TICK"]:
            raise _config_error(config, "only the TICK input and AT_TICK output are served")
        return None

    def start(self, node: NodeRun) -> None:
        name = self.config.input_side_packets[0].name
        if name not in node.graph.side_packets:
            raise ServingError(Status.MEDIAPIPE_GRAPH_START_ERROR, f"missing input side packet: {name}")
        self.value = node.graph.side_packets[name]

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        node.emit(self.config.output_streams[0].tag_index, self.value, timestamp)


CALCULATORS: dict[str, type[Calculator]] = {
    calculator.name: calculator
    for calculator in (
        PassThroughCalculator,
        PythonExecutorCalculator,
        OpenVINOModelServerSessionCalculator,
        OpenVINOInferenceCalculator,
        OVMSOVCalculator,
        PyTensorOvTensorConverterCalculator,
        SidePacketToStreamCalculator,
    )
}
