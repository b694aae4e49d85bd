"""The supervisor of `--grpc_workers N`: it starts the workers, tells them whether all are ready, replaces one that
dies after its initial load, and stops them all on a signal, a failure before readiness or a crash loop."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from .link import CHANNEL_FD_ENV, WORKER_ENV

log = logging.getLogger("pyovms.workers")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
"""A worker that dies after it was ready is replaced; more than MAX_RESTARTS deaths within RESTART_WINDOW_S stop the
server, so that a process manager sees a crash loop."""
STOP_TIMEOUT_S = 30.0
"""How long a stopped worker may take beyond its grace period before it is killed."""
POLL_S = 0.1
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: Linux delivers SIGTERM to it when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _prepare(settings: Settings) -> None:
    """Work done once before the workers start, so that they do not race each other doing it."""
    if settings.demo:
        from ..repository.demo import SAMPLE_IMAGE, build_demo_repository

        root = build_demo_repository().parent
        log.info("Demo repository built in %s (a sample image: %s)", root, root / SAMPLE_IMAGE)


@dataclass(slots=True)
class _Worker:
    """One worker process, and the supervisor's end of its channel (JSON lines: the worker says `ready` once its
    initial load has finished; the supervisor tells it whether every worker is ready)."""

    index: int
    process: subprocess.Popen[bytes]
    channel: socket.socket
    ready: bool = False
    pending: bytes = b""

    def receive(self) -> bool:
        """Read what the worker said; True when it has just become ready."""
        was_ready = self.ready
        with contextlib.suppress(BlockingIOError, ConnectionError):
            while data := self.channel.recv(4096):
                self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        self.ready |= any(json.loads(line).get("event") == "ready" for line in lines if line.strip())
        return self.ready and not was_ready

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # a worker that has just died: the loop handles its death
            self.channel.send(json.dumps(message).encode() + b"\n")


def _start_worker(index: int, argv: list[str]) -> _Worker:
    channel, theirs = socket.socketpair()
    channel.setblocking(False)
    env = dict(os.environ, **{WORKER_ENV: str(index), CHANNEL_FD_ENV: str(theirs.fileno())})
    try:
        command = [sys.executable, "-m", "pyovms", *argv]
        process = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, pass_fds=(theirs.fileno(),))
    finally:
        theirs.close()
    return _Worker(index, process, channel)


def supervise(settings: Settings, argv: list[str]) -> int:
    """Start `settings.grpc_workers` workers running `argv`; restart one that dies after it was ready, until a signal,
    a worker's failure before it was ready, or too many deaths; exit status."""
    _prepare(settings)
    stopping = False
    workers: list[_Worker] = []
    signalled: set[int] = set()  # a second SIGTERM would kill a worker that already restored default handlers
    deaths: list[float] = []

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)
                signalled.add(worker.process.pid)

    def stop_all(skip: Collection[int] = ()) -> list[int]:
        statuses = _stop_all([w.process for w in workers], signal.SIGTERM, settings.shutdown_grace_s, skip)
        for worker in workers:
            worker.channel.close()
        return statuses

    def every_worker_ready() -> bool:
        return all(w.ready and w.process.poll() is None for w in workers)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        workers.extend(_start_worker(index, argv) for index in range(settings.grpc_workers))
        log.info("Started %d gRPC workers: pids %s", len(workers), " ".join(str(w.process.pid) for w in workers))
        told: bool | None = None  # what the workers were last told of every worker's readiness
        while not stopping:
            for slot, worker in enumerate(workers):
                if worker.receive():  # tell a worker that has just become ready how the others are
                    worker.send({"event": "readiness", "every_worker_ready": every_worker_ready()})
                status = worker.process.poll()
                if status is None or stopping:
                    continue
                pid, ended = worker.process.pid, _ended(status)
                worker.receive()
                if not worker.ready:
                    log.error("gRPC worker %d %s before it was ready; stopping the others", pid, ended)
                    stop_all()
                    return exit_status(status) or 1
                now = time.monotonic()
                deaths = [t for t in deaths if now - t < RESTART_WINDOW_S] + [now]
                if len(deaths) > MAX_RESTARTS:
                    log.error(
                        "gRPC worker %d %s: %d deaths in %.0f s; stopping the others",
                        pid, ended, len(deaths), RESTART_WINDOW_S,
                    )  # fmt: skip
                    stop_all()
                    return exit_status(status) or 1
                worker.channel.close()
                workers[slot] = replacement = _start_worker(worker.index, argv)
                log.warning(
                    "gRPC worker %d %s; started gRPC worker %d in its place (restart %d of at most %d in %.0f s)",
                    pid, ended, replacement.process.pid, len(deaths), MAX_RESTARTS, RESTART_WINDOW_S,
                )  # fmt: skip
            if (now_ready := every_worker_ready()) != told:
                told = now_ready
                for worker in workers:
                    worker.send({"event": "readiness", "every_worker_ready": now_ready})
            time.sleep(POLL_S)
        statuses = stop_all(skip=signalled)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return next((exit_status(status) for status in statuses if status), 0)


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: 128 + N for one killed by signal N (Popen says -N)."""
    return 128 - returncode if returncode < 0 else returncode


def _ended(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _stop_all(
    workers: list[subprocess.Popen[bytes]], signum: int, grace_s: float, skip: Collection[int] = ()
) -> list[int]:
    """Signal the workers still running (but those in `skip`), wait for them (their grace period and
    STOP_TIMEOUT_S), kill the stragglers; exit statuses."""
    for worker in workers:
        if worker.poll() is None and worker.pid not in skip:
            worker.send_signal(signum)
    limit_s = grace_s + STOP_TIMEOUT_S
    deadline = time.monotonic() + limit_s
    statuses = []
    for worker in workers:
        try:
            statuses.append(worker.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            log.error("gRPC worker %d did not stop in %.0f s; killing it", worker.pid, limit_s)
            worker.kill()
            statuses.append(worker.wait())
    return statuses
