"""DAG pipelines (`pipeline_config_list`): configuration, load-time validation and execution.

A pipeline is a servable like a model version: it is found by name after models (spec §2.2), is unversioned
(always version 1; a request's version must still parse), validates requests against its own inputs, and answers
with the outputs its `outputs` section names. Its inputs are the implicit `request` node's outputs and its outputs
the implicit `response` node's inputs; `DL model` nodes run a served model, `custom` nodes a C or Python library
(`pyovms.custom_nodes.interface`).

Execution: every node is an asyncio task that waits for the nodes it reads from, so independent branches run
concurrently. Intermediate tensors are passed as numpy views over the producing model's output bytes (no copy);
outputs that go straight to the response keep those bytes.

Demultiplexing: a node with `demultiply_count` (or the entry, with the pipeline's) has its outputs cut along the
first dimension into branches (views); the nodes downstream run once per branch, concurrently, until a node that
names it in `gather_from_node` (or the response) stacks the branches again. Demultiplexers nest: a demultiplexer
inside another's branches opens a level inside it, and levels are gathered innermost first (LIFO), by nodes or, for
every level still open, by the response (one new leading dimension per level, the outermost first).

A retired pipeline (reload, shutdown) deinitializes its custom nodes once the requests running on it have finished.

Validation happens when the pipeline is loaded, after the models, with OVMS's messages (spec §5.3); an invalid
pipeline is registered but not available, and the others are unaffected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..custom_nodes.interface import CustomNode
from ..errors import ServingError, Status
from ..observability.statistics import InferStatistics
from ..tensors.messages import InferOutput, TensorSpec
from ..tensors.shapes import Dim
from ..tensors.validation import check_dims

if TYPE_CHECKING:
    from ..repository.registry import Repository

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
    gathers: bool = False
    """Whether the node stacks the innermost level of its inputs' branches (`gather_from_node`)."""
    split: int | None = None
    """This node's `demultiply_count` (-1: dynamic); None when it does not demultiplex."""

    @property
    def name(self) -> str:
        return self.config.name


Value = np.ndarray | InferOutput
Branch = tuple[int, ...]
"""Which branch a result belongs to: one index per demultiplexing level, outermost first (`()` outside any)."""
Results = dict[Branch, dict[str, Value]]
"""A node's outputs by alias, for each branch it ran in (one entry, `()`, outside demultiplexing)."""

DEMULTIPLY_LIMIT = 10_000
"""The most branches one demultiplexer may open (OVMS's limit, and config.json's bound on `demultiply_count`)."""


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
        self._running = 0
        self._retired = False
        self._chain = all(earlier.name in later.dependencies for earlier, later in itertools.pairwise(nodes))
        """Each node reads the one before it, so none can run beside another: they run in order, with no tasks."""

    @classmethod
    def build(cls, config: PipelineConfig, repository: Repository) -> Pipeline:
        """Validate `config` against the served models; raise ServingError with OVMS's message when invalid."""
        return _Validator(config, repository).build()

    @property
    def libraries(self) -> set[str]:
        """The custom node libraries its nodes run."""
        return {node.config.library_name for node in self._nodes if node.custom is not None}

    @property
    def models(self) -> set[str]:
        """The models its nodes run."""
        return {node.config.model_name for node in self._nodes if node.custom is None}

    async def infer(self, inputs: Mapping[str, np.ndarray], requested: Sequence[str] = ()) -> list[InferOutput]:
        started = time.perf_counter_ns()
        self._running += 1
        try:
            outputs = await self._infer(inputs, requested)
        finally:
            self._running -= 1
            if self._retired and self._running == 0:
                self._close_nodes()
        self.statistics.compute_infer.add(time.perf_counter_ns() - started)
        return outputs

    async def _infer(self, inputs: Mapping[str, np.ndarray], requested: Sequence[str]) -> list[InferOutput]:
        request: Results = {(): dict(inputs)}
        if self._entry_split is not None:
            request = _split(request, self._entry_split, REQUEST)
        results: dict[str, Results] = {REQUEST: request}
        if self._chain:  # nothing could run concurrently: no tasks (each costs loop iterations)
            for node in self._nodes:
                await self._run(node, results)
        else:
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
            branches = {branch: values[source.item] for branch, values in results[source.node].items()}
            while () not in branches:  # every level not gathered by a node is gathered here, innermost first
                branches = _gather(branches)
            outputs.append(_as_output(name, branches[()]))
        return outputs

    async def _run(
        self, node: _Node, results: dict[str, Results], tasks: dict[str, asyncio.Task[None]] | None = None
    ) -> None:
        """Run `node` once per branch it runs in, after the nodes it reads (their `tasks`, unless run in order)."""
        if tasks is not None and node.dependencies:
            await asyncio.gather(*(tasks[name] for name in node.dependencies))
        sources = {name: results[s.node] for name, s in node.config.inputs}
        if node.gathers:
            feeds = _gathered_feeds(node, sources)
        else:
            branches = next(iter(sources.values())).keys() if sources else [()]
            feeds = {
                branch: {name: _array(sources[name][branch][s.item]) for name, s in node.config.inputs}
                for branch in branches
            }
        if len(feeds) == 1:
            runs = [await self._execute(node, next(iter(feeds.values())))]
        else:
            runs = await asyncio.gather(*(self._execute(node, feed) for feed in feeds.values()))
        produced: Results = dict(zip(feeds, runs, strict=True))
        results[node.name] = produced if node.split is None else _split(produced, node.split, node.name)

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
        """Retire the pipeline: its custom nodes are deinitialized once the requests running on it have finished."""
        self._retired = True
        if self._running == 0:
            self._close_nodes()

    def _close_nodes(self) -> None:
        for node in self._nodes:
            if node.custom is not None:
                node.custom.close()


def _count(configured: int | None) -> int | None:
    """A `demultiply_count` with OVMS's deprecated 0 read as -1 (dynamic)."""
    return -1 if configured == 0 else configured


def _array(value: Value) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.as_numpy()


def _gathered_feeds(node: _Node, sources: dict[str, Results]) -> dict[Branch, dict[str, np.ndarray]]:
    """A gathering node's inputs: each input's branches stacked along its innermost level."""
    feeds: dict[Branch, dict[str, np.ndarray]] = {}
    for name, source in node.config.inputs:
        values = {branch: outputs[source.item] for branch, outputs in sources[name].items()}
        for branch, stacked in _gather(values).items():
            feeds.setdefault(branch, {})[name] = stacked
    return feeds


def _gather(values: dict[Branch, Value]) -> dict[Branch, np.ndarray]:
    """Collapse the innermost level: the values of sibling branches stacked in branch order (a new first dim)."""
    siblings: dict[Branch, list[Value]] = {}
    for branch in sorted(values):
        siblings.setdefault(branch[:-1], []).append(values[branch])
    return {outer: _stack(group) for outer, group in siblings.items()}


def _stack(values: list[Value]) -> np.ndarray:
    arrays = [_array(v) for v in values]
    if any(a.shape != arrays[0].shape or a.dtype != arrays[0].dtype for a in arrays):
        shapes = sorted({f"{a.dtype.name} {list(a.shape)}" for a in arrays})
        raise ServingError(Status.PIPELINE_INCONSISTENT_SHARD_DIMENSIONS, ", ".join(shapes))
    return np.stack(arrays)


def _split(produced: Results, count: int, node: str) -> Results:
    """Every output of `node`, in every branch it ran in, cut along its first dimension into branches one level
    deeper (views, no copy)."""
    split: Results = {}
    for branch, outputs in produced.items():
        arrays = {alias: _array(value) for alias, value in outputs.items()}
        sizes = {alias: a.shape[0] if a.ndim else 0 for alias, a in arrays.items()}
        found = next(iter(sizes.values()), 0)
        if found > DEMULTIPLY_LIMIT:
            raise ServingError(
                Status.PIPELINE_TOO_LARGE_DIMENSION_SIZE_TO_DEMULTIPLY,
                f"Node: {node}; {found} branches, at most {DEMULTIPLY_LIMIT}",
            )
        flat = sorted(alias for alias, a in arrays.items() if a.ndim == 0)
        if flat:
            raise ServingError(
                Status.PIPELINE_WRONG_NUMBER_OF_DIMENSIONS_TO_DEMULTIPLY,
                f"Node: {node}; {', '.join(f'{a}: {list(arrays[a].shape)}' for a in flat)}",
            )
        if any(size != found for size in sizes.values()) or (count > 0 and found != count):
            expected = count if count > 0 else found
            actual = ", ".join(f"{k}: {v}" for k, v in sorted(sizes.items()))
            raise ServingError(
                Status.PIPELINE_WRONG_DIMENSION_SIZE_TO_DEMULTIPLY,
                f"Node: {node}; Expected: {expected}; Actual: {actual}",
            )
        if found == 0:
            raise ServingError(Status.PIPELINE_DEMULTIPLEXER_NO_RESULTS, f"Node: {node}")
        for i in range(found):
            split[(*branch, i)] = {alias: array[i] for alias, array in arrays.items()}
    return split


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
        self._assign_levels(order)
        inputs = self._pipeline_inputs(model_inputs)
        outputs = self._pipeline_outputs(inputs, model_outputs)
        self._check_tensor_agreement(model_inputs, model_outputs)
        nodes = [
            _Node(
                self.nodes[name],
                model_inputs[name],
                tuple(sorted({s.node for _, s in self.nodes[name].inputs if s.node != REQUEST})),
                self.custom.get(name),
                bool(self.nodes[name].gather_from_node),
                _count(self.nodes[name].demultiply_count),
            )
            for name in order
        ]
        return Pipeline(config, nodes, inputs, outputs, self.repository)

    def _source_levels(self, source: Connection) -> tuple[str, ...]:
        """The demultiplexers (outermost first) whose branches a tensor belongs to."""
        if source.node == REQUEST:
            return (REQUEST,) if self.config.demultiply_count is not None else ()
        producer = self.nodes[source.node]
        levels = self.levels[producer.name]
        return (*levels, producer.name) if producer.demultiply_count is not None else levels

    def _assign_levels(self, order: list[str]) -> None:
        """Each node's demultiplexing levels (OVMS's session levels): a node's inputs share theirs, a gather closes
        the innermost one and must name it (LIFO order); a demultiplexer may open a level inside another's."""
        self.levels: dict[str, tuple[str, ...]] = {}
        for name in order:
            node = self.nodes[name]
            found = {self._source_levels(source) for _, source in node.inputs}
            if len(found) > 1:
                raise _invalid(Status.PIPELINE_DEMUX_GATHER_NOT_LIFO, f"node {name} reads from different branch levels")
            levels = next(iter(found), ())
            if node.gather_from_node:
                if not levels or levels[-1] != node.gather_from_node:
                    innermost = f"; the innermost is {levels[-1]}" if levels else ""
                    raise _invalid(
                        Status.PIPELINE_DEMUX_GATHER_NOT_LIFO,
                        f"node {name} gathers from {node.gather_from_node}{innermost}",
                    )
                levels = levels[:-1]
            self.levels[name] = levels

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
                    failure = self.repository.library_failures.get(node.library_name)
                    if failure is not None:  # the library's own failure, OVMS's message for it
                        raise _invalid(failure.status, f"node {node.name}: {failure.details}")
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
                threshold = self.repository.pool_settings.inline_threshold_s
                custom = self.custom[node.name] = library.instantiate(node.name, node.params, threshold)
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
                for level in reversed(self._source_levels(source)):  # gathered at the response, innermost first
                    spec = _prepend(spec, self._branch_count(level))
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
