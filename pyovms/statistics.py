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

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Duration:
    """How many times a phase ran and its total time in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass(slots=True)
class InferStatistics:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
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
