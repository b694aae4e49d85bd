"""Calculators that move packets without running a model: pass-through, the pyovms.Tensor <-> array converter, and
a side packet turned into a stream."""

from __future__ import annotations

from typing import Any

import numpy as np

from ....errors import ServingError, Status
from ....tensors import datatypes
from ....tensors.node_tensor import Tensor
from ..graph_config import NodeConfig
from ..runtime import Inputs, NodeRun
from .base import Calculator, LoadContext, config_error, node_options


class PassThroughCalculator(Calculator):
    """Input i goes to output i unchanged."""

    name = "PassThroughCalculator"

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        if len(config.input_streams) != len(config.output_streams):
            raise config_error(config, "needs as many output streams as input streams")
        return None

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        for source, target in zip(self.config.input_streams, self.config.output_streams, strict=True):
            packet = inputs.get(source.tag_index)
            if packet is not None:
                node.emit(target.tag_index, packet.payload, timestamp)


class PyTensorOvTensorConverterCalculator(Calculator):
    """`OVMS_PY_TENSOR` <-> `OVTENSOR`: one input, one output."""

    name = "PyTensorOvTensorConverterCalculator"

    @classmethod
    async def prepare(cls, config: NodeConfig, context: LoadContext) -> Any:
        if len(config.input_streams) != 1 or len(config.output_streams) != 1:
            raise config_error(config, "needs exactly one input stream and one output stream")
        tags = (config.input_streams[0].tag, config.output_streams[0].tag)
        if tags not in (("OVMS_PY_TENSOR", "OVTENSOR"), ("OVTENSOR", "OVMS_PY_TENSOR")):
            raise config_error(config, "the stream tags must be OVMS_PY_TENSOR and OVTENSOR")
        if tags[1] == "OVMS_PY_TENSOR":
            options = node_options(config, "PyTensorOvTensorConverterCalculatorOptions")
            if options is None or "OVMS_PY_TENSOR" not in options.tag_to_output_tensor_names:
                raise config_error(config, "tag_to_output_tensor_names must name the OVMS_PY_TENSOR output")
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
            raise config_error(config, "needs exactly one input side packet")
        if [r.tag for r in config.input_streams] != ["TICK"] or [r.tag for r in config.output_streams] != ["AT_TICK"]:
            raise config_error(config, "only the TICK input and AT_TICK output are served")
        return None

    def start(self, node: NodeRun) -> None:
        name = self.config.input_side_packets[0].name
        if name not in node.graph.side_packets:
            raise ServingError(Status.MEDIAPIPE_GRAPH_START_ERROR, f"missing input side packet: {name}")
        self.value = node.graph.side_packets[name]

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None:
        node.emit(self.config.output_streams[0].tag_index, self.value, timestamp)
