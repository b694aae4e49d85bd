"""DAG pipelines (`pipeline_config_list`): configuration, load-time validation and execution.

A pipeline is a servable like a model version: it is found by name after models (spec §2.2), is unversioned
(always version 1; a request's version must still parse), validates requests against its own inputs, and answers
with the outputs its `outputs` section names. Its inputs are the implicit `request` node's outputs and its outputs
the implicit `response` node's inputs; `DL model` nodes run a served model, `custom` nodes a Python library
(`pyovms.custom_node`).

Execution: every node is an asyncio task that waits for the nodes it reads from, so independent branches run
concurrently. Intermediate tensors are passed as numpy views over the producing model's output bytes (no copy);
outputs that go straight to the response keep those bytes.

Demultiplexing: a node with `demultiply_count` (or the entry, with the pipeline's) has its outputs cut along the
first dimension into branches (views); the nodes downstream run once per branch, concurrently, until a node that
names it in `gather_from_node` (or the response) stacks the branches again. One level of demultiplexing is
served; nested demultiplexers are refused at load.

Validation happens when the pipeline is loaded, after the models, with OVMS's messages (spec §5.3); an invalid
pipeline is registered but not available, and the others are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .custom_node import CustomNode
from .errors import ServingError, Status
from .inference import InferOutput, TensorSpec
from .shapes import Dim
from .statistics import InferStatistics
from .validation import check_dims

if TYPE_CHECKING:
    from .repository import Repository

log = logging.getLogger("pyovms.pipeline")

REQUEST = "request"
RESPONSE = "response"
PLATFORM = "OpenVINO"


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


def _invalid(status: Status, details: str) -> ServingError:
    return ServingError(status, details)


@dataclass(slots=True)
class _Node:
    """A validated node: what it reads, what runs it (a served model, or a custom node), what it exposes."""

    config: NodeConfig
    model_specs: Mapping[str, TensorSpec]
    """The model's (or custom node's) input specs, by input name (checked against the tensors it receives)."""
    dependencies: tuple[str, ...]
    custom: CustomNode | None = None
    branch: str | None = None
    """The demultiplexer (a node's name, or `request` for the entry) whose branches this node runs once per."""
    gathers: str | None = None
    """The demultiplexer whose branches are stacked into this node's inputs (`gather_from_node`)."""
    split: int | None = None
    """This node's `demultiply_count` (-1: dynamic); None when it does not demultiplex."""

    @property
    def name(self) -> str:
        return self.config.name


class Pipeline:
    """A validated pipeline behind the servable interface."""

    platform = PLATFORM
    version = 1

    def __init__(
        self,
        config: PipelineConfig,
        nodes: list[_Node],
        inputs: dict[str, TensorSpec],
        outputs: dict[str, TensorSpec],
        repository: Repository,
    ) -> None:
        self.name = config.name
        self.config = config
        self.inputs = inputs
        self.outputs = outputs
        self.statistics = InferStatistics()
        self._nodes = nodes
        self._repository = repository
        self._entry_split = _count(config.demultiply_count)

    @classmethod
    def build(cls, config: PipelineConfig, repository: Repository) -> Pipeline:
        """Validate `config` against the served models; raise ServingError with OVMS's message when invalid."""
        return _Validator(config, repository).build()

    async def infer(self, inputs: Mapping[str, np.ndarray], requested: Sequence[str] = ()) -> list[InferOutput]:
        started = time.perf_counter_ns()
        request: Shards = dict(inputs)
        if self._entry_split is not None:
            request = _split(request, self._entry_split, REQUEST)
        results: dict[str, Shards] = {REQUEST: request}
        tasks: dict[str, asyncio.Task[None]] = {}
        for node in self._nodes:  # topological order: a node's dependencies have their tasks already
            tasks[node.name] = asyncio.ensure_future(self._run(node, results, tasks))
        try:
            await asyncio.gather(*tasks.values())
        except BaseException:
            for task in tasks.values():
                task.cancel()
            raise
        wanted = set(requested)
        outputs = []
        for name, source in sorted(self.config.outputs.items()):
            if wanted and name not in wanted:
                continue
            value = results[source.node]
            if isinstance(value, list):  # branches not gathered by a node are gathered at the response
                outputs.append(InferOutput.from_array(name, _stack([branch[source.item] for branch in value])))
            else:
                outputs.append(_as_output(name, value[source.item]))
        self.statistics.compute_infer.add(time.perf_counter_ns() - started)
        return outputs

    async def _run(self, node: _Node, results: dict[str, Shards], tasks: dict[str, asyncio.Task[None]]) -> None:
        await asyncio.gather(*(tasks[name] for name in node.dependencies))
        if node.branch is None:
            feed = {
                name: _read(results[s.node], s.item, gather=node.gathers is not None) for name, s in node.config.inputs
            }
            produced: Shards = await self._execute(node, feed)
            results[node.name] = produced if node.split is None else _split(produced, node.split, node.name)
            return
        count = len(results[node.branch])
        feeds = [
            {name: _read(results[s.node], s.item, branch=i) for name, s in node.config.inputs} for i in range(count)
        ]
        results[node.name] = list(await asyncio.gather(*(self._execute(node, feed) for feed in feeds)))

    async def _execute(self, node: _Node, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray | InferOutput]:
        """One run of the node on `feed`; outputs by alias. Errors name the node."""
        for input_name, array in feed.items():
            check_dims(node.model_specs[input_name], array.shape, f"Node: {node.name} input: {input_name}")
        wanted = sorted(set(node.config.outputs.values()))
        try:
            if node.custom is not None:
                by_item: Mapping[str, np.ndarray | InferOutput] = await node.custom.execute(feed, wanted)
            else:
                version = str(node.config.version) if node.config.version else ""
                entry = await self._repository.serving_version(node.config.model_name, version)
                assert entry.servable is not None
                by_item = {output.name: output for output in await entry.servable.infer(feed, wanted)}
        except ServingError as exc:
            details = f"Node: {node.name}; {exc.details}" if exc.details else f"Node: {node.name}"
            raise ServingError(exc.status, details) from exc
        return {alias: by_item[item] for alias, item in node.config.outputs.items()}

    def close(self) -> None:
        """Deinitialize the custom nodes."""
        for node in self._nodes:
            if node.custom is not None:
                node.custom.close()


Value = np.ndarray | InferOutput
Shards = dict[str, Value] | list[dict[str, Value]]
"""A node's outputs by alias; a list of them, one per branch, inside a demultiplexed part of the pipeline."""


def _count(configured: int | None) -> int | None:
    """A `demultiply_count` with OVMS's deprecated 0 read as -1 (dynamic)."""
    return -1 if configured == 0 else configured


def _array(value: Value) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.as_numpy()


def _read(shards: Shards, item: str, branch: int | None = None, gather: bool = False) -> np.ndarray:
    """A tensor a node reads: from one branch, gathered from every branch, or as is."""
    if isinstance(shards, dict):
        return _array(shards[item])
    if branch is not None:
        return _array(shards[branch][item])
    assert gather
    return _stack([shard[item] for shard in shards])


def _stack(values: list[Value]) -> np.ndarray:
    arrays = [_array(v) for v in values]
    if any(a.shape != arrays[0].shape for a in arrays):
        shapes = sorted({str(list(a.shape)) for a in arrays})
        raise ServingError(Status.PIPELINE_INCONSISTENT_SHARD_DIMENSIONS, ", ".join(shapes))
    return np.stack(arrays)


def _split(produced: dict[str, Value], count: int, node: str) -> list[dict[str, Value]]:
    """Every output of `node` cut along its first dimension into branches (views, no copy)."""
    arrays = {alias: _array(value) for alias, value in produced.items()}
    sizes = {alias: a.shape[0] if a.ndim else 0 for alias, a in arrays.items()}
    found = next(iter(sizes.values()), 0)
    if any(size != found for size in sizes.values()) or (count > 0 and found != count):
        expected = count if count > 0 else found
        raise ServingError(
            Status.PIPELINE_WRONG_DIMENSION_SIZE_TO_DEMULTIPLY,
            f"Node: {node}; Expected: {expected}; Actual: {', '.join(f'{k}: {v}' for k, v in sorted(sizes.items()))}",
        )
    if found == 0:
        raise ServingError(Status.PIPELINE_DEMULTIPLEXER_NO_RESULTS, f"Node: {node}")
    return [{alias: array[i] for alias, array in arrays.items()} for i in range(found)]


def _as_output(name: str, value: np.ndarray | InferOutput) -> InferOutput:
    if isinstance(value, InferOutput):
        return InferOutput(name, value.datatype, value.shape, value.raw)
    return InferOutput.from_array(name, value)


class _Validator:
    """OVMS's load-time checks (spec §5.3), in one pass over the configuration."""

    def __init__(self, config: PipelineConfig, repository: Repository) -> None:
        self.config = config
        self.repository = repository
        self.nodes = {node.name: node for node in config.nodes}
        self.custom: dict[str, CustomNode] = {}

    def build(self) -> Pipeline:
        try:
            return self._build()
        except BaseException:
            for custom in self.custom.values():
                custom.close()
            raise

    def _build(self) -> Pipeline:
        config = self.config
        self._check_nodes()
        model_inputs, model_outputs = self._model_specs()
        self._check_connections(model_inputs, model_outputs)
        order = self._topological_order()
        self.branch = self._branches(order)
        inputs = self._pipeline_inputs(model_inputs)
        outputs = self._pipeline_outputs(inputs, model_outputs)
        self._check_tensor_agreement(model_inputs, model_outputs)
        nodes = [
            _Node(
                self.nodes[name],
                model_inputs[name],
                tuple(sorted({s.node for _, s in self.nodes[name].inputs if s.node != REQUEST})),
                self.custom.get(name),
                self.branch[name],
                self.nodes[name].gather_from_node or None,
                _count(self.nodes[name].demultiply_count),
            )
            for name in order
        ]
        return Pipeline(config, nodes, inputs, outputs, self.repository)

    def _source_branch(self, source: Connection) -> str | None:
        """Which demultiplexer's branches a tensor belongs to (None: not demultiplexed)."""
        if source.node == REQUEST:
            return REQUEST if self.config.demultiply_count is not None else None
        producer = self.nodes[source.node]
        if producer.demultiply_count is not None:
            if self.branch[producer.name] is not None:
                raise _invalid(Status.NOT_IMPLEMENTED, f"node {producer.name}: nested demultiplexing is not served yet")
            return producer.name
        return self.branch[producer.name]

    def _branches(self, order: list[str]) -> dict[str, str | None]:
        """Each node's demultiplexing level; a node's inputs share one, and a gather closes the one it names."""
        self.branch: dict[str, str | None] = {}
        for name in order:
            node = self.nodes[name]
            levels = {self._source_branch(source) for _, source in node.inputs}
            if node.gather_from_node:
                if levels != {node.gather_from_node}:
                    raise _invalid(
                        Status.PIPELINE_DEMUX_GATHER_NOT_LIFO, f"node {name} gathers from {node.gather_from_node}"
                    )
                self.branch[name] = None
            elif len(levels) > 1:
                raise _invalid(Status.PIPELINE_DEMUX_GATHER_NOT_LIFO, f"node {name} reads from different branch levels")
            else:
                self.branch[name] = next(iter(levels), None)
        return self.branch

    def _branch_count(self, demultiplexer: str) -> int:
        count = self.config.demultiply_count if demultiplexer == REQUEST else self.nodes[demultiplexer].demultiply_count
        return _count(count) or -1

    def _produced(self, source: Connection, model_outputs: dict[str, Mapping[str, TensorSpec]]) -> TensorSpec:
        """A node output as one branch sees it: a demultiplexer's outputs lose their first dimension."""
        producer = self.nodes[source.node]
        spec = model_outputs[producer.name][producer.outputs[source.item]]
        count = _count(producer.demultiply_count)
        if count is None:
            return spec
        where = f"node {producer.name} output {source.item}"
        if spec.datatype == "BYTES":
            raise _invalid(Status.PIPELINE_DEMULTIPLY_STRINGS, where)
        if len(spec.shape) < 2:
            raise _invalid(Status.PIPELINE_NOT_ENOUGH_DIMENSIONS_TO_DEMULTIPLY, f"{where}: {list(spec.metadata_shape)}")
        if count > 0 and spec.shape[0].is_static and spec.shape[0].lo != count:
            raise _invalid(Status.PIPELINE_DEMULTIPLY_COUNT_MISMATCH, f"{where}: {spec.shape[0]} vs {count}")
        return _drop_first(spec)

    def _check_nodes(self) -> None:
        names = [node.name for node in self.config.nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _invalid(Status.PIPELINE_NODE_NAME_DUPLICATE, ", ".join(duplicates))
        if REQUEST in names:
            raise _invalid(Status.PIPELINE_MULTIPLE_ENTRY_NODES, f"a node is named {REQUEST}")
        if RESPONSE in names:
            raise _invalid(Status.PIPELINE_MULTIPLE_EXIT_NODES, f"a node is named {RESPONSE}")
        for node in self.config.nodes:
            gather = node.gather_from_node
            if gather == REQUEST:
                raise _invalid(Status.PIPELINE_GATHER_FROM_ENTRY, f"node {node.name}")
            if gather and gather not in self.nodes:
                raise _invalid(Status.PIPELINE_GATHER_NODE_MISSING, f"node {node.name}: {gather}")
            if gather and self.nodes[gather].demultiply_count is None:
                raise _invalid(Status.PIPELINE_GATHER_NOT_DEMULTIPLEXER, f"node {node.name}: {gather}")
            if node.type == "custom":
                if node.library_name not in self.repository.libraries:
                    raise _invalid(Status.PIPELINE_INCORRECT_LIBRARY, f"node {node.name}: {node.library_name}")
                continue
            if node.model_name not in self.repository.models:
                raise _invalid(Status.PIPELINE_NODE_REFERING_TO_MISSING_MODEL, f"node {node.name}: {node.model_name}")
        dynamic = [node.name for node in self.config.nodes if _count(node.demultiply_count) == -1]
        if _count(self.config.demultiply_count) == -1:
            dynamic.insert(0, REQUEST)
        if len(dynamic) > 1:
            raise _invalid(Status.PIPELINE_MULTIPLE_DYNAMIC_DEMULTIPLEXERS, ", ".join(dynamic))

    def _model_specs(self) -> tuple[dict[str, Mapping[str, TensorSpec]], dict[str, Mapping[str, TensorSpec]]]:
        """Each node's model input and output specs, from the version it will run (pinned or default)."""
        inputs, outputs = {}, {}
        for node in self.config.nodes:
            if node.type == "custom":
                library = self.repository.libraries[node.library_name]
                custom = self.custom[node.name] = CustomNode(library, node.name, node.params)
                inputs[node.name], outputs[node.name] = custom.inputs, custom.outputs
                continue
            model = self.repository.models[node.model_name]
            entry = model.versions.get(node.version) if node.version else model.default_version()
            if entry is None or entry.servable is None:
                missing = f"version {node.version} of model" if node.version else "no version available of model"
                raise _invalid(
                    Status.PIPELINE_DEFINITION_NOT_LOADED_YET, f"node {node.name}: {missing} {node.model_name}"
                )
            inputs[node.name], outputs[node.name] = entry.servable.inputs, entry.servable.outputs
        return inputs, outputs

    def _check_connections(
        self, model_inputs: dict[str, Mapping[str, TensorSpec]], model_outputs: dict[str, Mapping[str, TensorSpec]]
    ) -> None:
        for node in self.config.nodes:
            for item in node.outputs.values():
                if item not in model_outputs[node.name]:
                    raise _invalid(Status.PIPELINE_NODE_REFERING_TO_MISSING_MODEL_OUTPUT, f"node {node.name}: {item}")
            seen: set[str] = set()
            for input_name, source in node.inputs:
                if input_name in seen:
                    raise _invalid(Status.PIPELINE_MULTIPLE_CONNECTIONS_TO_INPUT, f"{node.name}: {input_name}")
                seen.add(input_name)
                if input_name not in model_inputs[node.name]:
                    raise _invalid(Status.PIPELINE_CONNECTION_TO_MISSING_MODEL_INPUT, f"{node.name}: {input_name}")
                self._check_source(source, f"node {node.name} input {input_name}")
            missing = sorted(set(model_inputs[node.name]) - seen)
            if missing:
                raise _invalid(Status.PIPELINE_NOT_ALL_INPUTS_CONNECTED, f"node {node.name}: {', '.join(missing)}")
        for name, source in self.config.outputs.items():
            self._check_source(source, f"pipeline output {name}")

    def _check_source(self, source: Connection, where: str) -> None:
        if source.node == RESPONSE:
            raise _invalid(Status.PIPELINE_CONNECTION_FROM_RESPONSE, where)
        if source.node == REQUEST:
            if source.item not in self.config.inputs:
                raise _invalid(Status.PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE, f"{where}: request/{source.item}")
            return
        producer = self.nodes.get(source.node)
        if producer is None:
            raise _invalid(Status.PIPELINE_NODE_REFERING_TO_MISSING_NODE, f"{where}: {source.node}")
        if source.item not in producer.outputs:
            raise _invalid(
                Status.PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE, f"{where}: {source.node}/{source.item}"
            )

    def _topological_order(self) -> list[str]:
        """Nodes in an order where each comes after the nodes it reads; cycles and unused nodes are errors."""
        dependencies = {node.name: {s.node for _, s in node.inputs if s.node != REQUEST} for node in self.config.nodes}
        order: list[str] = []
        remaining = dict(dependencies)
        while remaining:
            ready = sorted(name for name, needs in remaining.items() if needs <= set(order))
            if not ready:
                raise _invalid(Status.PIPELINE_CYCLE_FOUND, ", ".join(sorted(remaining)))
            order.extend(ready)
            for name in ready:
                del remaining[name]
        used = {s.node for s in self.config.outputs.values()}
        frontier = list(used)
        while frontier:
            for needed in dependencies.get(frontier.pop(), ()):
                if needed not in used:
                    used.add(needed)
                    frontier.append(needed)
        unused = sorted(set(dependencies) - used)
        if unused:
            raise _invalid(Status.PIPELINE_CONTAINS_UNCONNECTED_NODES, ", ".join(unused))
        return order

    def _pipeline_inputs(self, model_inputs: dict[str, Mapping[str, TensorSpec]]) -> dict[str, TensorSpec]:
        """Each pipeline input takes the metadata of the model inputs it feeds; they must agree."""
        specs: dict[str, TensorSpec] = {}
        for name in sorted(self.config.inputs):
            consumers = [
                model_inputs[node.name][input_name]
                for node in self.config.nodes
                for input_name, source in node.inputs
                if source == Connection(REQUEST, name)
            ]
            if not consumers:
                raise _invalid(Status.PIPELINE_INPUT_NOT_CONSUMED, name)
            first = consumers[0]
            for other in consumers[1:]:
                if (other.datatype, other.shape) != (first.datatype, first.shape):
                    raise _invalid(Status.PIPELINE_INPUTS_AMBIGUOUS_METADATA, name)
            spec = replace(first, name=name)
            if self.config.demultiply_count is not None:
                spec = _prepend(spec, self._branch_count(REQUEST))
            specs[name] = spec
        return specs

    def _pipeline_outputs(
        self, inputs: dict[str, TensorSpec], model_outputs: dict[str, Mapping[str, TensorSpec]]
    ) -> dict[str, TensorSpec]:
        specs: dict[str, TensorSpec] = {}
        for name, source in sorted(self.config.outputs.items()):
            if source.node == REQUEST:
                spec = inputs[source.item]
            else:
                spec = self._produced(source, model_outputs)
                branch = self._source_branch(source)
                if branch is not None:  # gathered at the response
                    spec = _prepend(spec, self._branch_count(branch))
            specs[name] = replace(spec, name=name)
        return specs

    def _check_tensor_agreement(
        self, model_inputs: dict[str, Mapping[str, TensorSpec]], model_outputs: dict[str, Mapping[str, TensorSpec]]
    ) -> None:
        """A model output feeding a model input must match it in precision and shape (no conversion)."""
        for node in self.config.nodes:
            for input_name, source in node.inputs:
                if source.node == REQUEST:
                    continue
                produced = self._produced(source, model_outputs)
                if node.gather_from_node:
                    produced = _prepend(produced, self._branch_count(node.gather_from_node))
                expected = model_inputs[node.name][input_name]
                if produced.datatype != expected.datatype or not _shapes_compatible(produced, expected):
                    raise _invalid(
                        Status.PIPELINE_TENSOR_MISMATCH,
                        f"{source.node}/{source.item} {produced.datatype} {list(produced.metadata_shape)} -> "
                        f"{node.name}/{input_name} {expected.datatype} {list(expected.metadata_shape)}",
                    )


def _drop_first(spec: TensorSpec) -> TensorSpec:
    return replace(spec, shape=spec.shape[1:], batch_index=0 if len(spec.shape) > 1 else None, layout="")


def _prepend(spec: TensorSpec, count: int) -> TensorSpec:
    """The spec of branches stacked along a new first dimension (a [N,H,W,C] layout becomes [N,?,H,W,C])."""
    lead = Dim.static(count) if count > 0 else Dim.any()
    layout = f"[N,?,{spec.layout[3:]}" if spec.layout.startswith("[N,") else spec.layout
    return replace(spec, shape=(lead, *spec.shape), batch_index=0, layout=layout)


def _shapes_compatible(produced: TensorSpec, expected: TensorSpec) -> bool:
    """Same rank, and every pair of dimensions can hold a common size."""
    if len(produced.shape) != len(expected.shape):
        return False
    return all(a.overlaps(b) for a, b in zip(produced.shape, expected.shape, strict=True))
