"""Demultiplexing: a node's outputs cut into branches and stacked again.

A node with `demultiply_count` (or the entry, with the pipeline's) has its outputs cut along the first dimension into
branches (views); the nodes downstream run once per branch, concurrently, until a node that names it in
`gather_from_node` (or the response) stacks the branches again. Demultiplexers nest: a demultiplexer inside
another's branches opens a level inside it, and levels are gathered innermost first (LIFO), by nodes or, for every
level still open, by the response (one new leading dimension per level, the outermost first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import ServingError, Status
from ...tensors.messages import InferOutput
from .config import Connection

Value = np.ndarray | InferOutput
Branch = tuple[int, ...]
"""Which branch a result belongs to: one index per demultiplexing level, outermost first (`()` outside any)."""
Results = dict[Branch, dict[str, Value]]
"""A node's outputs by alias, for each branch it ran in (one entry, `()`, outside demultiplexing)."""

DEMULTIPLY_LIMIT = 10_000
"""The most branches one demultiplexer may open (OVMS's limit, and config.json's bound on `demultiply_count`)."""


def as_array(value: Value) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.as_numpy()


def gathered_feeds(
    inputs: Sequence[tuple[str, Connection]], sources: dict[str, Results]
) -> dict[Branch, dict[str, np.ndarray]]:
    """A gathering node's inputs (name, source): each input's branches stacked along its innermost level."""
    feeds: dict[Branch, dict[str, np.ndarray]] = {}
    for name, source in inputs:
        values = {branch: outputs[source.item] for branch, outputs in sources[name].items()}
        for branch, stacked in gather(values).items():
            feeds.setdefault(branch, {})[name] = stacked
    return feeds


def gather(values: dict[Branch, Value]) -> dict[Branch, np.ndarray]:
    """Collapse the innermost level: the values of sibling branches stacked in branch order (a new first dim)."""
    siblings: dict[Branch, list[Value]] = {}
    for branch in sorted(values):
        siblings.setdefault(branch[:-1], []).append(values[branch])
    return {outer: stack(group) for outer, group in siblings.items()}


def stack(values: list[Value]) -> np.ndarray:
    arrays = [as_array(v) for v in values]
    if any(a.shape != arrays[0].shape or a.dtype != arrays[0].dtype for a in arrays):
        shapes = sorted({f"{a.dtype.name} {list(a.shape)}" for a in arrays})
        raise ServingError(Status.PIPELINE_INCONSISTENT_SHARD_DIMENSIONS, ", ".join(shapes))
    return np.stack(arrays)


def split(produced: Results, count: int, node: str) -> Results:
    """Every output of `node`, in every branch it ran in, cut along its first dimension into branches one level
    deeper (views, no copy)."""
    split: Results = {}
    for branch, outputs in produced.items():
        arrays = {alias: as_array(value) for alias, value in outputs.items()}
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
