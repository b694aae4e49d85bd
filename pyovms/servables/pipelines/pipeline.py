"""The pipeline servable: its nodes run as asyncio tasks, each after the nodes it reads from, so independent
branches run concurrently. Intermediate tensors are passed as numpy views over the producing model's output bytes (no
copy); outputs that go straight to the response keep those bytes. A retired pipeline (reload, shutdown)
deinitializes its custom nodes once the requests running on it have finished."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...custom_nodes.interface import CustomNode
from ...errors import ServingError
from ...observability.statistics import InferStatistics
from ...tensors.messages import InferOutput, TensorSpec
from ...tensors.validation import check_dims
from .branches import Results, as_array, gather, gathered_feeds, split
from .config import REQUEST, NodeConfig, PipelineConfig, demultiply_count

if TYPE_CHECKING:
    from ...repository.registry import Repository

PLATFORM = "OpenVINO"


@dataclass(slots=True)
class Node:
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


class Pipeline:
    """A validated pipeline behind the servable interface."""

    platform = PLATFORM
    version = 1

    def __init__(
        self,
        config: PipelineConfig,
        nodes: list[Node],
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
        self._entry_split = demultiply_count(config.demultiply_count)
        self._running = 0
        self._retired = False
        self._chain = all(earlier.name in later.dependencies for earlier, later in itertools.pairwise(nodes))
        """Each node reads the one before it, so none can run beside another: they run in order, with no tasks."""

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
            request = split(request, self._entry_split, REQUEST)
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
                branches = gather(branches)
            outputs.append(_as_output(name, branches[()]))
        return outputs

    async def _run(
        self, node: Node, results: dict[str, Results], tasks: dict[str, asyncio.Task[None]] | None = None
    ) -> None:
        """Run `node` once per branch it runs in, after the nodes it reads (their `tasks`, unless run in order)."""
        if tasks is not None and node.dependencies:
            await asyncio.gather(*(tasks[name] for name in node.dependencies))
        sources = {name: results[s.node] for name, s in node.config.inputs}
        if node.gathers:
            feeds = gathered_feeds(node.config.inputs, sources)
        else:
            branches = next(iter(sources.values())).keys() if sources else [()]
            feeds = {
                branch: {name: as_array(sources[name][branch][s.item]) for name, s in node.config.inputs}
                for branch in branches
            }
        if len(feeds) == 1:
            runs = [await self._execute(node, next(iter(feeds.values())))]
        else:
            runs = await asyncio.gather(*(self._execute(node, feed) for feed in feeds.values()))
        produced: Results = dict(zip(feeds, runs, strict=True))
        results[node.name] = produced if node.split is None else split(produced, node.split, node.name)

    async def _execute(self, node: Node, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray | InferOutput]:
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


def _as_output(name: str, value: np.ndarray | InferOutput) -> InferOutput:
    if isinstance(value, InferOutput):
        return InferOutput(name, value.datatype, value.shape, value.raw)
    return InferOutput.from_array(name, value)
