"""Building a pipeline: OVMS's load-time checks (spec §5.3), in one pass over the configuration.

Validation happens when the pipeline is loaded, after the models, with OVMS's messages; an invalid pipeline is
registered but not available, and the others are unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from ...custom_nodes.interface import CustomNode
from ...errors import ServingError, Status
from ...tensors.messages import TensorSpec
from ...tensors.shapes import Dim
from .config import REQUEST, RESPONSE, Connection, PipelineConfig, demultiply_count
from .pipeline import Node, Pipeline

if TYPE_CHECKING:
    from ...repository.registry import Repository


def build_pipeline(config: PipelineConfig, repository: Repository) -> Pipeline:
    """Validate `config` against the served models; raise ServingError with OVMS's message when invalid."""
    return _Validator(config, repository).build()


def _invalid(status: Status, details: str) -> ServingError:
    return ServingError(status, details)


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
            Node(
                self.nodes[name],
                model_inputs[name],
                tuple(sorted({s.node for _, s in self.nodes[name].inputs if s.node != REQUEST})),
                self.custom.get(name),
                bool(self.nodes[name].gather_from_node),
                demultiply_count(self.nodes[name].demultiply_count),
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
        return demultiply_count(count) or -1

    def _produced(self, source: Connection, model_outputs: dict[str, Mapping[str, TensorSpec]]) -> TensorSpec:
        """A node output as one branch sees it: a demultiplexer's outputs lose their first dimension."""
        producer = self.nodes[source.node]
        spec = model_outputs[producer.name][producer.outputs[source.item]]
        count = demultiply_count(producer.demultiply_count)
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
        dynamic = [node.name for node in self.config.nodes if demultiply_count(node.demultiply_count) == -1]
        if demultiply_count(self.config.demultiply_count) == -1:
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
