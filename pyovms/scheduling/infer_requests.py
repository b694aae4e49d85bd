"""How inferences run: a pool of OpenVINO infer requests driven from asyncio, asynchronously or inline.

Asynchronous (the default): a coroutine takes an idle infer request (waiting on an asyncio queue when all
`nireq` are busy), starts it asynchronously and awaits a future that OpenVINO's completion callback resolves
from its own thread through `call_soon_threadsafe`. Outputs are copied out inside the callback, so the request
goes back to the pool at once. OpenVINO does not call the callback when an inference fails; a watchdog task polls
the requests in flight with `wait_for(0)` (which raises the inference's exception) so a failure is answered.

Inline: for models whose inferences take less than `inline_threshold_s` on average, handing work to OpenVINO's
thread and back costs more than the inference itself (two thread hops and a loop wake-up per request), so the
request runs synchronously on the event loop. The pool measures every inference (a moving average after a
warm-up) and switches: inline below the threshold, back to asynchronous above twice the threshold. A threshold of
0 keeps every model asynchronous.

Bounded waiting: at most `max_queued` coroutines wait for an idle infer request; one more is refused at once with
RESOURCE_EXHAUSTED instead of letting the queue (and the request bytes it holds) grow without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import openvino as ov

from ..errors import ServingError, Status
from ..observability.statistics import InferStatistics

log = logging.getLogger("pyovms.scheduling")

T = TypeVar("T")

WATCHDOG_PERIOD_S = 0.05
DEFAULT_INLINE_THRESHOLD_S = 300e-6
WARMUP_INFERENCES = 16
AVERAGE_WEIGHT = 0.1
DEFAULT_MAX_QUEUED = 4096


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How every model's infer-request pool runs (server flags)."""

    inline_threshold_s: float = DEFAULT_INLINE_THRESHOLD_S
    """Models whose inferences average less than this run inline on the event loop (0: never)."""
    max_queued: int = DEFAULT_MAX_QUEUED
    """Requests that may wait for an idle infer request, per model version (0: no limit)."""


DEFAULT_POOL_SETTINGS = PoolSettings()


class InlineChoice:
    """Whether work of one kind (a model's inferences, a C custom node's executions) runs inline on the event loop:
    a moving average of its durations after a warm-up, inline below the threshold, handed to another thread again
    above twice the threshold (0: never inline)."""

    def __init__(self, threshold_s: float, what: str) -> None:
        self.threshold_s = threshold_s
        self.inline = False
        self._what = what
        self._mean_s = 0.0
        self._measured = 0

    def record(self, seconds: float) -> None:
        """Account one duration and choose."""
        self._measured += 1
        self._mean_s = seconds if self._measured == 1 else self._mean_s + AVERAGE_WEIGHT * (seconds - self._mean_s)
        if self.threshold_s <= 0 or self._measured < WARMUP_INFERENCES:
            return
        if not self.inline and self._mean_s < self.threshold_s:
            self.inline = True
            log.debug("%s takes %.0f us on average: running inline", self._what, self._mean_s * 1e6)
        elif self.inline and self._mean_s > 2 * self.threshold_s:
            self.inline = False
            log.debug("%s takes %.0f us on average: running asynchronously", self._what, self._mean_s * 1e6)


@dataclass(slots=True)
class _InFlight:
    request: ov.InferRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    collect_arg: Any
    shared: Shared | None = None


@dataclass(frozen=True, slots=True)
class Shared:
    """Tensors over memory the request does not own (shared memory regions), set on an infer request for one
    inference in place of its own tensors, which are set back afterwards."""

    inputs: Sequence[tuple[int, ov.Tensor]] = ()
    outputs: Sequence[tuple[int, ov.Tensor]] = ()


def _set_inputs(request: ov.InferRequest, inputs: Sequence[tuple[int, np.ndarray | ov.Tensor]]) -> None:
    """Arrays are copied into the request's own input tensors (resized for dynamic shapes): cheaper than setting a
    new tensor per call, and the raw views over request bytes are read-only, which OpenVINO would copy anyway.
    Validation guarantees each array's dtype is the input's element type. Tensors (strings) are set as they are.
    """
    for index, value in inputs:
        if isinstance(value, ov.Tensor):
            request.set_input_tensor(index, value)
            continue
        target = request.get_input_tensor(index)
        view = target.data
        if view.shape != value.shape:
            target.shape = value.shape
            view = target.data
        view[...] = value


def _set_shared(request: ov.InferRequest, shared: Shared) -> None:
    for index, tensor in shared.inputs:
        request.set_input_tensor(index, tensor)
    for index, tensor in shared.outputs:
        request.set_output_tensor(index, tensor)


class InferRequestPool(Generic[T]):
    """`size` infer requests of one compiled model; `collect(request, arg)` turns a finished one into a result."""

    def __init__(
        self,
        compiled: ov.CompiledModel,
        size: int,
        collect: Callable[[ov.InferRequest, Any], T],
        settings: PoolSettings = DEFAULT_POOL_SETTINGS,
        statistics: InferStatistics | None = None,
    ) -> None:
        self._collect = collect
        self.statistics = statistics or InferStatistics()
        """Where `run` adds its queue and inference times."""
        self._choice = InlineChoice(settings.inline_threshold_s, "inference")
        self._max_queued = settings.max_queued
        self._idle: asyncio.Queue[ov.InferRequest] = asyncio.Queue()
        self._in_flight: dict[int, _InFlight] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._size = size
        self.waiting = 0
        """Requests waiting for an idle infer request."""
        self._own: dict[int, tuple[list[ov.Tensor], list[ov.Tensor]]] = {}
        """Each infer request's own input and output tensors (set back after an inference on shared tensors)."""
        for _ in range(size):
            request = compiled.create_infer_request()
            request.set_callback(self._on_done, id(request))
            self._own[id(request)] = (
                [request.get_input_tensor(i) for i in range(len(compiled.inputs))],
                [request.get_output_tensor(i) for i in range(len(compiled.outputs))],
            )
            self._idle.put_nowait(request)

    @property
    def size(self) -> int:
        return self._size

    @property
    def active(self) -> int:
        """Infer requests in use."""
        return self._size - self._idle.qsize()

    @property
    def inline(self) -> bool:
        """Whether inferences currently run inline on the event loop."""
        return self._choice.inline

    def record(self, seconds: float) -> None:
        """Account one inference's duration (OpenVINO's `latency`) and choose inline or asynchronous execution."""
        self._choice.record(seconds)

    async def run(
        self,
        inputs: Sequence[tuple[int, np.ndarray | ov.Tensor]],
        collect_arg: Any = None,
        shared: Shared | None = None,
    ) -> T:
        """Infer `inputs` (arrays or tensors by input index) and return `collect(request, collect_arg)`; `shared`
        tensors are set for this inference only (OpenVINO reads and writes their memory in place)."""
        queued = time.perf_counter_ns()
        if self._idle.qsize():
            request = self._idle.get_nowait()
        else:
            if self._max_queued and self.waiting >= self._max_queued:
                raise ServingError(
                    Status.INFER_QUEUE_FULL,
                    f"{self.waiting} requests wait for one of {self._size} infer requests; the limit is "
                    f"{self._max_queued} (--max_queued_requests)",
                )
            self.waiting += 1
            try:
                request = await self._idle.get()
            finally:
                self.waiting -= 1
        started = time.perf_counter_ns()
        self.statistics.queue.add(started - queued)
        try:
            _set_inputs(request, inputs)
            if shared is not None:
                _set_shared(request, shared)
        except BaseException:
            self._release(request, shared)
            raise
        if self._choice.inline:
            try:
                request.infer(share_outputs=True)  # outputs are read by `collect`, not from this result
                result = self._collect(request, collect_arg)
                seconds = request.latency * 1e-3
            finally:
                self._release(request, shared)
            self.record(seconds)
            self.statistics.compute_infer.add(time.perf_counter_ns() - started)
            return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        key = id(request)
        self._in_flight[key] = _InFlight(request, loop, future, collect_arg, shared)
        try:
            request.start_async()
        except BaseException:
            self._in_flight.pop(key, None)
            self._release(request, shared)
            raise
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = loop.create_task(self._watch())
        result = await future
        self.statistics.compute_infer.add(time.perf_counter_ns() - started)
        return result

    def wait_finished(self) -> None:
        """Block until the inferences OpenVINO is running have ended (their requests may have gone): a process that
        exits while one runs is aborted by OpenVINO's destructors."""
        for entry in list(self._in_flight.values()):
            with contextlib.suppress(Exception):  # a failed inference has ended too
                entry.request.wait()

    def _on_done(self, key: int) -> None:
        """OpenVINO's callback, on its own thread: copy the outputs out and hand them to the loop."""
        entry = self._in_flight.pop(key, None)
        if entry is None:
            return
        try:
            outcome: T | BaseException = self._collect(entry.request, entry.collect_arg)
        except BaseException as exc:  # delivered to the awaiting coroutine
            outcome = exc
        elapsed = entry.request.latency * 1e-3  # OpenVINO's own timing: thread scheduling delays excluded
        entry.loop.call_soon_threadsafe(self._finish, entry, outcome, elapsed)

    def _release(self, request: ov.InferRequest, shared: Shared | None) -> None:
        """Back to the idle requests, with its own tensors set again in place of shared ones."""
        if shared is not None:
            own_inputs, own_outputs = self._own[id(request)]
            for index, _ in shared.inputs:
                request.set_input_tensor(index, own_inputs[index])
            for index, _ in shared.outputs:
                request.set_output_tensor(index, own_outputs[index])
        self._idle.put_nowait(request)

    def _finish(self, entry: _InFlight, outcome: T | BaseException, elapsed: float = 0.0) -> None:
        request, future = entry.request, entry.future
        self._release(request, entry.shared)
        if elapsed:
            self.record(elapsed)
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def _watch(self) -> None:
        """Answer failed inferences, whose callback OpenVINO never calls."""
        while self._in_flight:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            for key, entry in list(self._in_flight.items()):
                try:
                    entry.request.wait_for(0)
                except Exception as exc:
                    if self._in_flight.pop(key, None) is not None:
                        self._finish(entry, exc)
