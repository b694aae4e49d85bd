"""The one interface every backend implements: model versions, pipelines and graphs.

The core, validation and front ends only use these members. One exception: a graph reads the request itself
(`Graph.infer_request`), because what its inputs become depends on its stream tags, not on tensor specs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from ..observability.statistics import InferStatistics
from ..tensors.messages import InferOutput, TensorSpec


class Servable(Protocol):
    """Something that answers inference requests for one name and version."""

    name: str
    version: int
    platform: str
    inputs: Mapping[str, TensorSpec]
    """Inputs by (mapped) name, sorted by name."""
    outputs: Mapping[str, TensorSpec]
    """Outputs by (mapped) name, sorted by name."""
    statistics: InferStatistics
    """Cumulative counters; the core adds request-level times, the servable its queue and inference times."""

    async def infer(self, inputs: Mapping[str, np.ndarray], requested: Sequence[str] = ()) -> list[InferOutput]:
        """Run on validated inputs; return the outputs sorted by name (only `requested` ones when given)."""
        ...
