"""The supervisor of `--grpc_workers N`: it starts the workers, tells them whether all are ready, replaces one that
dies after its initial load, and stops them all on a signal, a failure before readiness or a crash loop."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..observability.metrics import merge_expositions
from ..observability.statistics import InferStatistics
from ..settings import Settings
from .cores import core_shares
from .link import CHANNEL_FD_ENV, CORES_ENV, WORKER_ENV

log = logging.getLogger("pyovms.workers")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
"""A worker that dies after it was ready is replaced; more than MAX_RESTARTS deaths within RESTART_WINDOW_S stop the
server, so that a process manager sees a crash loop."""
STOP_TIMEOUT_S = 30.0
"""How long a stopped worker may take beyond its grace period before it is killed."""
POLL_S = 0.1
SUMMED = ("statistics", "metrics")
"""Queries whose answers are summed over the workers (the origin sums; the supervisor adds the ended workers')."""
REMEMBERED = ("load_model", "unload_model", "register_shared_memory", "unregister_shared_memory")
"""The relayed calls a worker that starts later applies too: explicit loads and unloads are pinned over config.json,
and a registered region must be found by every worker (a reload only re-reads what a new worker reads anyway)."""
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
    """One worker process, and the supervisor's end of its channel (JSON lines, see `pyovms.workers.link`)."""

    index: int
    process: subprocess.Popen[bytes]
    channel: socket.socket
    loaded: bool = False
    """It said its initial load has finished."""
    catching_up: int = 0
    """Calls of the control history sent to it and not applied yet."""
    told: bool | None = None
    """What it was last told of every worker's readiness."""
    pending: bytes = b""

    @property
    def ready(self) -> bool:
        return self.loaded and self.catching_up == 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def receive(self) -> list[dict[str, Any]]:
        with contextlib.suppress(BlockingIOError, ConnectionError):
            while data := self.channel.recv(1 << 16):
                self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # a worker that has just died: the loop handles its death
            self.channel.sendall(json.dumps(message).encode() + b"\n")


@dataclass(slots=True)
class _Relay:
    """A control call every worker applies; `origin` (None for a replacement catching up) gets the outcomes."""

    call: dict[str, Any]
    origin: _Worker | None
    origin_id: int
    waiting: set[int]
    """The pids still to answer."""
    outcomes: dict[int, dict[str, Any]] = field(default_factory=dict)


class _ControlPlane:
    """Control calls applied by every worker before the one a client asked answers, and the history of explicit
    loads, unloads and region registrations, which a worker that starts later applies before it counts as ready."""

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.relays: dict[int, _Relay] = {}
        self.history: list[tuple[int, dict[str, Any]]] = []
        """(relay id, call) of each load, unload and registration, in order: a failed one is taken out when its outcome
        is in, and a successful one takes out the earlier calls it supersedes."""
        self._ids = itertools.count(1)
        self.last: dict[tuple[int, str], Any] = {}
        """Each worker's last answer to a statistics or metrics query, by (pid, method)."""
        self.ended: dict[str, Any] = {"statistics": [], "metrics": ""}
        """The counts of workers that have ended, as they last reported them: added to every sum, so that the
        server's counters never go backwards when a worker is replaced."""

    def handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        if message.get("event") == "ready":
            worker.loaded = True
            for _, call in self.history:
                self._apply(call, None, 0, [worker])
                worker.catching_up += 1
        elif message.get("op") == "relay":
            call = message["call"]
            targets = [w for w in self.workers if (w.loaded and w.alive()) or w is worker]
            relay_id = self._apply(call, worker, message["id"], targets)
            if call.get("method") in REMEMBERED:  # from now on: a worker that loads meanwhile replays it too
                self.history.append((relay_id, call))
        elif message.get("event") == "applied" and (relay := self.relays.get(message["id"])) is not None:
            relay.outcomes[worker.process.pid] = outcome = message["outcome"]
            relay.waiting.discard(worker.process.pid)
            if relay.call["method"] in SUMMED and outcome["ok"]:
                self.last[worker.process.pid, relay.call["method"]] = outcome["value"]
            if relay.origin is None:
                worker.catching_up -= 1
            self._complete(message["id"])

    def forget(self, dead: _Worker) -> None:
        """A worker died: nothing waits for its answers any more, and its last counts join the ended ones."""
        pid = dead.process.pid
        if (statistics := self.last.pop((pid, "statistics"), None)) is not None:
            self.ended["statistics"] = _sum_statistics([self.ended["statistics"], statistics])
        if (metrics := self.last.pop((pid, "metrics"), None)) is not None:
            self.ended["metrics"] = merge_expositions([self.ended["metrics"], metrics], counters_only=True)
        for relay_id in list(self.relays):
            self.relays[relay_id].waiting.discard(pid)
            self.relays[relay_id].outcomes.pop(pid, None)  # counted among the ended ones now
            self._complete(relay_id)

    def _apply(self, call: dict[str, Any], origin: _Worker | None, origin_id: int, targets: list[_Worker]) -> int:
        relay_id = next(self._ids)
        self.relays[relay_id] = _Relay(call, origin, origin_id, {w.process.pid for w in targets})
        for target in targets:
            target.send({"op": "apply", "id": relay_id, "call": call})
        return relay_id

    def _complete(self, relay_id: int) -> None:
        relay = self.relays[relay_id]
        if relay.waiting:
            return
        del self.relays[relay_id]
        if relay.origin is None:
            return
        own = relay.outcomes.pop(relay.origin.process.pid, None)
        outcomes = [o for o in (own, *relay.outcomes.values()) if o is not None]
        if relay.call["method"] in SUMMED:
            outcomes.append({"ok": True, "value": self.ended[relay.call["method"]]})
        if relay.call["method"] in REMEMBERED:  # a failed call is taken out; a successful one, what it supersedes
            failed = own is not None and not own["ok"]
            self.history = [
                (i, c)
                for i, c in self.history
                if not (i == relay_id and failed) and not (i < relay_id and not failed and _supersedes(relay.call, c))
            ]
        relay.origin.send({"event": "relayed", "id": relay.origin_id, "outcomes": outcomes})


def _supersedes(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether replaying `old` before `new` changes nothing: the history keeps the last call for each model and each
    region (an unload that also unloaded the pipelines running the model is kept)."""
    models = ("load_model", "unload_model")
    if new["method"] in models and old["method"] in models:
        return new["name"] == old["name"] and not old["parameters"].get("unload_dependents")
    regions = ("register_shared_memory", "unregister_shared_memory")
    if new["method"] in regions and old["method"] in regions:
        return new["name"] in ("", old["name"]) and not (old["method"] == regions[1] and old["name"] == "")
    return False


def _sum_statistics(snapshots: list[list[list[Any]]]) -> list[list[Any]]:
    """Rows [name, version, statistics] of several workers summed by (name, version); requests in flight left out."""
    totals: dict[tuple[str, str], InferStatistics] = {}
    for rows in snapshots:
        for name, version, data in rows:
            statistics = InferStatistics.from_dict(data)
            statistics.in_flight = 0
            if (total := totals.get((name, version))) is None:
                totals[name, version] = statistics
            else:
                total.merge(statistics)
    return [[name, version, statistics.as_dict()] for (name, version), statistics in totals.items()]


def _start_worker(index: int, argv: list[str], cores: list[int] | None) -> _Worker:
    """Worker `index` running `argv`; its event loop pins itself to `cores` (None: wherever Linux places it)."""
    channel, theirs = socket.socketpair()
    channel.setblocking(False)
    env = dict(os.environ, **{WORKER_ENV: str(index), CHANNEL_FD_ENV: str(theirs.fileno())})
    if cores is not None:
        env[CORES_ENV] = ",".join(map(str, cores))
    try:
        command = [sys.executable, "-m", "pyovms", *argv]
        process = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, pass_fds=(theirs.fileno(),))
    finally:
        theirs.close()
    return _Worker(index, process, channel)


def supervise(settings: Settings, argv: list[str]) -> int:
    """Start `settings.grpc_workers` workers running `argv`; relay their control calls; restart one that dies after
    it was ready, until a signal, a worker's failure before it was ready, or too many deaths; exit status."""
    _prepare(settings)
    shares: list[list[int] | None] = [None] * settings.grpc_workers
    if settings.worker_affinity:
        shares = [*core_shares(settings.grpc_workers)]
        log.info("gRPC workers' event loops pinned to cores %s", " | ".join(",".join(map(str, s)) for s in shares if s))
    stopping = False
    workers: list[_Worker] = []
    control = _ControlPlane(workers)
    signalled: set[int] = set()  # a second SIGTERM would kill a worker that already restored default handlers
    deaths: list[float] = []

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.alive():
                worker.process.send_signal(signum)
                signalled.add(worker.process.pid)

    def stop_all(skip: Collection[int] = ()) -> list[int]:
        statuses = _stop_all([w.process for w in workers], signal.SIGTERM, settings.shutdown_grace_s, skip)
        for worker in workers:
            worker.channel.close()
        return statuses

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        workers.extend(_start_worker(index, argv, shares[index]) for index in range(settings.grpc_workers))
        log.info("Started %d gRPC workers: pids %s", len(workers), " ".join(str(w.process.pid) for w in workers))
        while not stopping:
            for slot, worker in enumerate(workers):
                for message in worker.receive():
                    control.handle(worker, message)
                status = worker.process.poll()
                if status is None or stopping:
                    continue
                pid, ended = worker.process.pid, _ended(status)
                control.forget(worker)
                if not worker.loaded:
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
                workers[slot] = replacement = _start_worker(worker.index, argv, shares[worker.index])
                log.warning(
                    "gRPC worker %d %s; started gRPC worker %d in its place (restart %d of at most %d in %.0f s)",
                    pid, ended, replacement.process.pid, len(deaths), MAX_RESTARTS, RESTART_WINDOW_S,
                )  # fmt: skip
            every_ready = all(w.ready and w.alive() for w in workers)
            for worker in workers:
                if worker.loaded and worker.told != every_ready:
                    worker.told = every_ready
                    worker.send({"event": "readiness", "every_worker_ready": every_ready})
            select.select([w.channel for w in workers], [], [], POLL_S)
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
