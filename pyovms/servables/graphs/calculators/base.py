"""What every calculator shares: the base class, the load context, and the helpers for a node's options and errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ....errors import ServingError, Status
from ..graph_config import NodeConfig
from ..runtime import Inputs, NodeRun

if TYPE_CHECKING:
    from ....repository.registry import Repository


@dataclass(slots=True)
class LoadContext:
    """What a node may use while its graph definition loads."""

    base_path: Path
    """The graph's directory: relative handler paths are resolved against it."""
    repository: Repository


def config_error(node: NodeConfig, text: str) -> ServingError:
    return ServingError(Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR, f"node {node.name or node.calculator}: {text}")


def execution_error(node: NodeConfig, exc: ServingError) -> ServingError:
    """A node's failure as the graph reports it: `Mediapipe execution failed. MP status - node x: <reason>`."""
    if exc.status in (Status.MEDIAPIPE_EXECUTION_ERROR, Status.MEDIAPIPE_NODE_BUSY):
        return exc
    return ServingError(Status.MEDIAPIPE_EXECUTION_ERROR, f"node {node.name or node.calculator}: {exc.message}")


def node_options(node: NodeConfig, expected: str) -> Any:
    options = node.options
    if options is None:
        return None
    if options.DESCRIPTOR.name != expected:
        raise config_error(node, f"options of type {options.DESCRIPTOR.full_name}; expected mediapipe.{expected}")
    return options


def side_packet_name(node: NodeConfig, tag: str) -> str | None:
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
