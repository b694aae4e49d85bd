"""Served models in a graph: the session calculator naming a model, and the inference calculators running it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ....errors import ServingError, Status
from ....repository.registry import check_available, parse_version
from ....tensors import datatypes
from ....tensors.validation import check_dims
from ..graph_config import NodeConfig
from ..runtime import Inputs, NodeRun
from .base import Calculator, LoadContext, config_error, execution_error, node_options, side_packet_name

if TYPE_CHECKING:
    from ....repository.registry import Repository


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
    options = node_options(config, options_name)
    if options is None or not options.servable_name:
        raise config_error(config, f"servable_name is not set in {options_name}")
    try:
        parse_version(options.servable_version)
    except ServingError as exc:
        raise config_error(config, f"servable_version {options.servable_version!r} is not a number") from exc
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
        options = node_options(config, self.options_name)
        to_input = dict(options.tag_to_input_tensor_names) if options is not None else {}
        to_output = dict(options.tag_to_output_tensor_names) if options is not None else {}
        self.input_names = {ref.tag_index: to_input.get(ref.tag, ref.tag) for ref in config.input_streams}
        self.output_names = {ref.tag_index: to_output.get(ref.tag, ref.tag) for ref in config.output_streams}
        self.session: Session | None = shared if isinstance(shared, Session) else None

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        node_options(config, cls.options_name)
        if side_packet_name(config, "SESSION") is None:
            raise config_error(config, "input_side_packet SESSION:<name> is required")
        return None

    def start(self, node: NodeRun) -> None:
        if self.session is None:
            name = side_packet_name(self.config, "SESSION")
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
            raise execution_error(self.config, exc) from exc
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
