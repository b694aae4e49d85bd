"""Where user code runs: custom node libraries and Python graph nodes, each kind on a thread pool of its own.

User code may be slow or may hang, and Python cannot interrupt a thread. So:
- each kind has its own bounded pool: hung user calls never hold up image decoding, string splitting, model
  loading or OpenVINO's own threads;
- a client's deadline or cancellation ends its request at once (the awaiting coroutine is cancelled);
- a call still running when its request ends is written off: a new thread takes its place in the pool, so the
  pool keeps its full strength, and the old thread ends when the call returns. At most `MAX_REPLACED` threads per
  kind are replaced at a time; past that, a written-off call keeps its place until it returns, and calls wait for
  a free thread, as in any bounded pool;
- the threads are daemons: a call that never returns does not keep the server from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import redact_paths

T = TypeVar("T")

log = logging.getLogger(__name__)

WORKERS = max(4, 2 * (os.cpu_count() or 1))
"""Threads serving each kind of user code."""

MAX_REPLACED = 64
"""Threads per kind that may be running written-off calls while new threads serve in their place."""

USER_ERRORS = (Exception, SystemExit)
"""What user code may raise and the server survives, wherever it runs: a `sys.exit()` in a node must not stop the
server (`except USER_ERRORS` around every call into user code)."""


def describe(error: BaseException, typed: bool = False) -> str:
    """An exception of user code for a client's message: its text with server paths cut (the log keeps them whole),
    named by its type when `typed` or when it is a `sys.exit()`."""
    text = redact_paths(str(error))
    return f"{type(error).__name__}: {text}" if typed or isinstance(error, SystemExit) else text


_QUEUED, _RUNNING, _DONE, _CANCELLED, _ABANDONED = range(5)


@dataclass(eq=False)
class _Job:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    state: int = _QUEUED
    started: float = 0.0
    replaced: bool = False
    label: str = ""

    @property
    def name(self) -> str:
        """What runs, for the log: the caller's label, else the function's name."""
        return self.label or getattr(self.function, "__qualname__", repr(self.function))


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(_deliverable(error))


def _deliverable(error: BaseException) -> Exception:
    """What the awaiting request gets for an exception user code raised. StopIteration cannot be set on a future
    (the request would never be answered), and SystemExit or KeyboardInterrupt would stop the server's event loop:
    those become a RuntimeError naming them."""
    if isinstance(error, Exception) and not isinstance(error, StopIteration):
        return error
    wrapped = RuntimeError(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    wrapped.__cause__ = error
    return wrapped


class UserCodePool:
    """A bounded pool of daemon threads that writes off (and replaces) threads whose callers have gone."""

    def __init__(self, kind: str, workers: int = WORKERS, max_replaced: int = MAX_REPLACED) -> None:
        self.kind = kind
        self.workers = workers
        self.max_replaced = max_replaced
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._places = 0  # threads serving the queue, at most `workers`
        self._idle = 0  # of those, waiting for a job and not yet promised one
        self._abandoned = 0  # threads running calls whose requests have ended
        self._replaced = 0  # of those, threads whose place another thread took
        self._started = 0  # for thread names

    @property
    def abandoned(self) -> int:
        """Threads running calls whose requests have ended."""
        return self._abandoned

    async def run(self, function: Callable[..., T], *args: Any, label: str = "") -> T:
        """`function(*args)` on a pool thread, awaited without blocking the loop; `label` names it in the log."""
        loop = asyncio.get_running_loop()
        job = _Job(function, args, loop, loop.create_future(), label=label)
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif self._places < self.workers:
                self._places += 1
                self._start_thread()
        self._jobs.put(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._give_up(job)
            raise

    def _give_up(self, job: _Job) -> None:
        with self._lock:
            if job.state == _QUEUED:
                job.state = _CANCELLED  # the thread that takes it skips it
                return
            if job.state != _RUNNING:
                return
            job.state = _ABANDONED
            self._abandoned += 1
            abandoned = self._abandoned
            replaced = job.replaced = self._replaced < self.max_replaced
            if replaced:
                self._replaced += 1
                self._start_thread()
        name = job.name
        if replaced:
            log.warning(
                "%s call %s still running %.1f s after its request ended; its thread is written off and replaced "
                "(%d written off)",
                self.kind,
                name,
                time.monotonic() - job.started,
                abandoned,
            )
        else:
            log.error(
                "%s call %s still running after its request ended, and %d threads are already replaced: "
                "it keeps its thread, and further %s calls may wait for a free thread",
                self.kind,
                name,
                self._replaced,
                self.kind,
            )

    def _start_thread(self) -> None:
        """Called with the lock held."""
        self._started += 1
        thread = threading.Thread(target=self._serve, name=f"pyovms-{self.kind}-{self._started}", daemon=True)
        thread.start()

    def _serve(self) -> None:
        while self._serve_one(self._jobs.get()):
            pass

    def _serve_one(self, job: _Job) -> bool:
        """Run one job (its own frame, so nothing of it stays referenced while the thread waits for the next
        one); False when this thread has been replaced and ends."""
        with self._lock:
            if job.state == _CANCELLED:
                self._idle += 1  # this thread was promised to a job that no longer wants it
                return True
            job.state = _RUNNING
            job.started = time.monotonic()
        result, error = None, None
        try:
            result = job.function(*job.args)
        except BaseException as exc:  # delivered to the awaiting request, which decides what it means
            error = exc
        with self._lock:
            abandoned, replaced = job.state == _ABANDONED, job.replaced
            if abandoned:
                self._abandoned -= 1
                self._replaced -= replaced
            else:
                job.state = _DONE
            if not replaced:
                self._idle += 1
        if abandoned:
            log.warning(
                "%s call %s returned %.1f s after it started, after its request ended%s",
                self.kind,
                job.name,
                time.monotonic() - job.started,
                "; its thread ends" if replaced else "",
            )
            return not replaced
        with contextlib.suppress(RuntimeError):  # the caller's event loop has closed: nobody is waiting
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)
        return True


_pools: dict[str, UserCodePool] = {}


def user_code_pool(kind: str) -> UserCodePool:
    """The pool for `kind` ("custom_node", "python_node"), created on first use."""
    pool = _pools.get(kind)
    if pool is None:
        pool = _pools[kind] = UserCodePool(kind)
    return pool


async def run_user_code(kind: str, function: Callable[..., T], *args: Any, label: str = "") -> T:
    """`function(*args)` on the `kind` pool, awaited without blocking the loop; `label` names it in the log."""
    return await user_code_pool(kind).run(function, *args, label=label)
