"""A `pipeline_config_list` entry (already checked against config.json's schema) as dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REQUEST = "request"
"""The implicit entry node: its outputs are the pipeline's inputs."""
RESPONSE = "response"
"""The implicit exit node: its inputs are the pipeline's outputs."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Where a tensor comes from: a node's output (its alias) or a pipeline input (node `request`)."""

    node: str
    item: str


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    type: str
    model_name: str = ""
    version: int | None = None
    library_name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    inputs: tuple[tuple[str, Connection], ...] = ()
    """(node input name, source) in configuration order; a name may repeat (an error found by validation)."""
    outputs: dict[str, str] = field(default_factory=dict)
    """alias -> data_item (the model output it exposes)."""
    demultiply_count: int | None = None
    gather_from_node: str = ""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    name: str
    inputs: tuple[str, ...]
    nodes: tuple[NodeConfig, ...]
    outputs: dict[str, Connection]
    demultiply_count: int | None = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> PipelineConfig:
        """An entry of `pipeline_config_list` (already schema-checked)."""
        nodes = tuple(
            NodeConfig(
                name=node["name"],
                type=node["type"],
                model_name=node.get("model_name", ""),
                version=node.get("version"),
                library_name=node.get("library_name", ""),
                params=dict(node.get("params", {})),
                inputs=tuple((key, _connection(value)) for item in node["inputs"] for key, value in item.items()),
                outputs={output["alias"]: output["data_item"] for output in node["outputs"]},
                demultiply_count=node.get("demultiply_count"),
                gather_from_node=node.get("gather_from_node", ""),
            )
            for node in entry["nodes"]
        )
        outputs = {key: _connection(value) for item in entry["outputs"] for key, value in item.items()}
        return cls(entry["name"], tuple(entry["inputs"]), nodes, outputs, entry.get("demultiply_count"))


def _connection(value: Mapping[str, str]) -> Connection:
    return Connection(value["node_name"], value["data_item"])


def demultiply_count(configured: int | None) -> int | None:
    """A `demultiply_count` with OVMS's deprecated 0 read as -1 (dynamic)."""
    return -1 if configured == 0 else configured
