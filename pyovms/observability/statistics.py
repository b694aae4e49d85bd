"""Cumulative inference statistics of one servable (Triton's `statistics` extension, used by perf_analyzer).

Every counter is updated on the event loop thread, so no lock is needed; a request costs a few integer additions
and `perf_counter_ns` calls. The phases:

- queue: waiting for an idle OpenVINO infer request (recorded by the infer-request pool);
- compute_infer: the inference, including copying the outputs out of OpenVINO (recorded by the pool);
- compute_input: validating the request and turning it into arrays (recorded by the core);
- compute_output: building the response (recorded by the core);
- success / fail: the whole request, from the servable being found to the answer.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Any

BUCKETS_US = tuple(math.floor(10 * 1.8**i) for i in range(33))
"""Upper bounds (microseconds) of the latency histograms, OVMS's scheme: floor(10 x 1.8^i); +Inf follows."""


@dataclass(slots=True)
class Duration:
    """How many times a phase ran and its total time in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass(slots=True)
class Histogram(Duration):
    """A Duration that also counts its observations per latency bucket (for the metrics endpoint)."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_US) + 1))

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns
        self.buckets[bisect_left(BUCKETS_US, ns / 1000)] += 1


@dataclass(slots=True)
class InferStatistics:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Histogram = field(default_factory=Histogram)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Histogram = field(default_factory=Histogram)
    compute_output: Duration = field(default_factory=Duration)
    in_flight: int = 0
    """Requests being served now."""
    inference_count: int = 0
    """Inferences (batch elements); every request is one execution of batch 1 in pyovms."""
    execution_count: int = 0
    last_inference_ms: int = 0
    """Milliseconds since the epoch when the last request finished; 0 before the first."""

    def record_success(self, started: int, inputs_ready: int, inferred: int) -> None:
        """Account one answered request from `perf_counter_ns` marks taken by the core."""
        finished = time.perf_counter_ns()
        self.compute_input.add(inputs_ready - started)
        self.compute_output.add(finished - inferred)
        self.success.add(finished - started)
        self.inference_count += 1
        self.execution_count += 1
        self.last_inference_ms = time.time_ns() // 1_000_000

    def record_failure(self, started: int) -> None:
        self.fail.add(time.perf_counter_ns() - started)
        self.last_inference_ms = time.time_ns() // 1_000_000

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for another process: `from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferStatistics:
        fields_ = {
            name: data[name] for name in ("in_flight", "inference_count", "execution_count", "last_inference_ms")
        }
        durations = {name: Duration(**data[name]) for name in ("success", "fail", "compute_input", "compute_output")}
        histograms = {name: Histogram(**data[name]) for name in ("queue", "compute_infer")}
        return cls(**durations, **histograms, **fields_)

    def merge(self, other: InferStatistics) -> None:
        """Add `other`'s counts to these (the statistics of one version served by several processes)."""
        for name in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
            mine, theirs = getattr(self, name), getattr(other, name)
            mine.count += theirs.count
            mine.ns += theirs.ns
            if isinstance(mine, Histogram):
                mine.buckets = [a + b for a, b in zip(mine.buckets, theirs.buckets, strict=True)]
        self.in_flight += other.in_flight
        self.inference_count += other.inference_count
        self.execution_count += other.execution_count
        self.last_inference_ms = max(self.last_inference_ms, other.last_inference_ms)

    def copy(self) -> InferStatistics:
        return InferStatistics.from_dict(self.as_dict())
