"""How inferences run: a pool of OpenVINO asynchronous infer requests driven from asyncio.

The event loop never waits on OpenVINO. A coroutine takes an idle infer request (waiting on an asyncio queue
when all `nireq` are busy), starts it asynchronously and awaits a future that OpenVINO's completion callback
resolves from its own thread through `call_soon_threadsafe`. Outputs are copied out of the request inside the
callback, so the request goes back to the pool at once.

OpenVINO does not call the completion callback when an inference fails; a watchdog task polls the requests in
flight with `wait_for(0)` (which raises the inference's exception) so that a failure is answered, never hung.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import openvino as ov

log = logging.getLogger("pyovms.scheduling")

T = TypeVar("T")

WATCHDOG_PERIOD_S = 0.05


@dataclass(slots=True)
class _InFlight:
    request: ov.InferRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    inputs: Any  # kept referenced until completion: OpenVINO reads the arrays in place
    collect_arg: Any


class InferRequestPool(Generic[T]):
    """`size` infer requests of one compiled model; `collect(request, arg)` turns a finished one into a result."""

    def __init__(self, compiled: ov.CompiledModel, size: int, collect: Callable[[ov.InferRequest, Any], T]) -> None:
        self._collect = collect
        self._idle: asyncio.Queue[ov.InferRequest] = asyncio.Queue()
        self._in_flight: dict[int, _InFlight] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._size = size
        for _ in range(size):
            request = compiled.create_infer_request()
            request.set_callback(self._on_done, id(request))
            self._idle.put_nowait(request)

    @property
    def size(self) -> int:
        return self._size

    async def run(self, inputs: dict[Any, Any], collect_arg: Any = None) -> T:
        """Infer `inputs` (arrays by input index) and return `collect(request, collect_arg)`."""
        request = await self._idle.get()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        key = id(request)
        self._in_flight[key] = _InFlight(request, loop, future, inputs, collect_arg)
        try:
            request.start_async(inputs, share_inputs=True)
        except BaseException:
            self._in_flight.pop(key, None)
            self._idle.put_nowait(request)
            raise
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = loop.create_task(self._watch())
        return await future

    def _on_done(self, key: int) -> None:
        """OpenVINO's callback, on its own thread: copy the outputs out and hand them to the loop."""
        entry = self._in_flight.pop(key, None)
        if entry is None:
            return
        try:
            outcome: T | BaseException = self._collect(entry.request, entry.collect_arg)
        except BaseException as exc:
            outcome = exc
        entry.loop.call_soon_threadsafe(self._finish, entry.request, entry.future, outcome)

    def _finish(self, request: ov.InferRequest, future: asyncio.Future[T], outcome: T | BaseException) -> None:
        self._idle.put_nowait(request)
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
                        self._finish(entry.request, entry.future, exc)
