"""`--grpc_workers N`: N server processes sharing the gRPC port through SO_REUSEPORT.

One Python process serves at most one core's worth of gRPC and Python work (the GIL), so the command, when asked for
more than one worker, becomes a small supervisor: it starts N copies of itself with the same flags, each with its own
repository and compiled models, and the kernel spreads incoming *connections* over them (balancing is per connection,
not per request: one client channel always talks to one worker). The supervisor forwards SIGINT/SIGTERM to the
workers and waits for them; if a worker dies on its own the others are stopped and the supervisor exits non-zero,
so a process manager sees the failure instead of a server silently running at reduced capacity.

The workers share the cores: each one's OpenVINO gets `available_cores() // N` threads (`inference_threads`), so N
workers do not each size their thread pools to the whole machine. `--grpc_workers auto` starts one worker per
available core, counting the process's CPU affinity and its cgroup's CPU quota (a container's `--cpus`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

from .settings import Settings

log = logging.getLogger("pyovms.workers")

WORKER_ENV = "PYOVMS_GRPC_WORKER"
"""Set in a worker's environment to its index; a worker never starts workers of its own."""
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


def supervise(settings: Settings, argv: list[str]) -> int:
    """Start `settings.grpc_workers` workers running `argv`, wait for a signal or a worker's death; exit status."""
    _prepare(settings)
    stopping = False
    workers: list[subprocess.Popen[bytes]] = []
    signalled: set[int] = set()  # a second SIGTERM would kill a worker that already restored default handlers

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)
                signalled.add(worker.pid)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(settings.grpc_workers):
            env = dict(os.environ, **{WORKER_ENV: str(index)})
            workers.append(
                subprocess.Popen([sys.executable, "-m", "pyovms", *argv], env=env, preexec_fn=_die_with_parent)
            )
        log.info("Started %d gRPC workers: pids %s", len(workers), " ".join(str(w.pid) for w in workers))
        while not stopping:
            failed = next((w for w in workers if w.poll() is not None), None)
            if failed is not None:
                log.error("gRPC worker %d %s; stopping the others", failed.pid, _ended(failed.returncode))
                _stop_all(workers, signal.SIGTERM, settings.shutdown_grace_s)
                return exit_status(failed.returncode) or 1
            time.sleep(POLL_S)
        statuses = _stop_all(workers, signal.SIGTERM, settings.shutdown_grace_s, skip=signalled)
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
