"""`--grpc_workers N`: N server processes sharing the gRPC port through SO_REUSEPORT, answering as one server.

One Python process serves at most one core's worth of gRPC and Python work (the GIL), so the command, when asked for
more than one worker, becomes a small supervisor: it starts N copies of itself with the same flags, each with its own
repository and compiled models, and the kernel spreads incoming *connections* over them (balancing is per connection,
not per request: one client channel always talks to one worker).

The supervisor and each worker share a socket pair (JSON lines). A worker says when its initial load has finished;
the supervisor tells every worker whether all of them are ready, and a worker answers ready only then, so the
server's readiness is every worker's. A worker that dies after its initial load is replaced by a new one (its
clients reconnect to the others meanwhile), at most MAX_RESTARTS times in RESTART_WINDOW_S; a worker that fails
before it is ready (a busy port, a bad configuration), or a crash loop, stops the others and the supervisor exits
non-zero, so a process manager sees the failure. SIGINT and SIGTERM are forwarded to every worker.

The workers share the cores: each one's OpenVINO gets `available_cores() // N` threads (`inference_threads`), so N
workers do not each size their thread pools to the whole machine. `--grpc_workers auto` starts one worker per
available core, counting the process's CPU affinity and its cgroup's CPU quota (a container's `--cpus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import Settings

log = logging.getLogger("pyovms.workers")

WORKER_ENV = "PYOVMS_GRPC_WORKER"
"""Set in a worker's environment to its index; a worker never starts workers of its own."""
CHANNEL_FD_ENV = "PYOVMS_SUPERVISOR_FD"
"""Set in a worker's environment to its end of a socket pair with the supervisor (`SupervisorLink`)."""
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
"""A worker that dies after it was ready is replaced; more than MAX_RESTARTS deaths within RESTART_WINDOW_S stop the
server, so that a process manager sees a crash loop."""
STOP_TIMEOUT_S = 30.0
"""How long a stopped worker may take beyond its grace period before it is killed."""
POLL_S = 0.1
_PR_SET_PDEATHSIG = 1
CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by its cgroup's CPU quota (rounded up)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def inference_threads(workers: int) -> int | None:
    """OpenVINO's CPU threads for each of `workers` processes: their share of the available cores; None (OpenVINO's
    own choice: every core) for a single process."""
    return max(1, available_cores() // workers) if workers > 1 else None


def cpu_max_cores(text: str) -> float | None:
    """cgroup v2's `cpu.max` ("<quota> <period>" in microseconds, or "max <period>") in cores; None: no quota."""
    quota, _, period = text.strip().partition(" ")
    return None if quota == "max" or not period else int(quota) / int(period)


def cfs_cores(quota: str, period: str) -> float | None:
    """cgroup v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us` in cores; None: no quota (-1)."""
    return None if int(quota) < 0 else int(quota) / int(period)


def cgroup_cpu_quota(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> float | None:
    """The tightest CPU quota on this process's cgroup path (v2 `cpu.max`, v1 `cpu.cfs_*`), in cores; None: none.
    `proc_cgroup` and `root` are the kernel's files; other ones serve tests."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float | None] = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if not controllers:  # v2 (alone, or beside v1 under unified/)
            for base in (root, root / "unified"):
                quotas += [_read(cpu_max_cores, d / "cpu.max") for d in _up_to(base, path)]
        elif "cpu" in controllers.split(","):
            base = root / controllers
            for directory in _up_to(base, path):
                quotas.append(_read(cfs_cores, directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us"))
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def _up_to(base: Path, path: str) -> list[Path]:
    """`base/path` and each of its parents down to `base`."""
    directory = base / path.strip("/")
    return [directory, *[p for p in directory.parents if p.is_relative_to(base)]]


def _read(parse: Callable[..., float | None], *files: Path) -> float | None:
    try:
        return parse(*(f.read_text() for f in files))
    except (OSError, ValueError):
        return None


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def _die_with_parent() -> None:
    """Run in the child before exec: Linux delivers SIGTERM to it when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _prepare(settings: Settings) -> None:
    """Work done once before the workers start, so that they do not race each other doing it."""
    if settings.demo:
        from .repository.demo import SAMPLE_IMAGE, build_demo_repository

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


class SupervisorLink:
    """A worker's end of its channel to the supervisor: it says when its initial load has finished, and hears
    whether every worker is ready (a worker answers ready only then: the server's readiness is every worker's)."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    def from_environment(cls) -> SupervisorLink | None:
        """The link of a worker started by a supervisor; None in any other process."""
        fd = os.environ.pop(CHANNEL_FD_ENV, None)
        return cls(socket.socket(fileno=int(fd))) if fd is not None else None

    async def start(self, on_every_worker_ready: Callable[[bool], None]) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._channel)
        self._reading = asyncio.create_task(self._read(reader, on_every_worker_ready))

    async def _read(self, reader: asyncio.StreamReader, on_every_worker_ready: Callable[[bool], None]) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if message.get("event") == "readiness":
                on_every_worker_ready(bool(message["every_worker_ready"]))

    def notify_ready(self) -> None:
        """The initial load has finished (from then on, the supervisor replaces this worker if it dies)."""
        if self._writer is not None:
            self._writer.write(b'{"event": "ready"}\n')

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self._writer is not None:
            self._writer.close()


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
