"""The cores this process may use (CPU affinity, cgroup CPU quota), for `--grpc_workers auto`, and each worker's
share of them: the cores it is pinned to and its OpenVINO threads."""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable, Collection
from pathlib import Path

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


def core_shares(workers: int, cores: Collection[int] | None = None) -> list[list[int]]:
    """Split `cores` (default: this process's CPU affinity) into `workers` disjoint groups of consecutive cores, as
    even as the count allows (the first groups take one more). More workers than cores: cores are reused."""
    ordered = sorted(os.sched_getaffinity(0) if cores is None else cores)
    if workers >= len(ordered):
        return [[ordered[i % len(ordered)]] for i in range(workers)]
    size, extra = divmod(len(ordered), workers)
    shares, start = [], 0
    for index in range(workers):
        end = start + size + (index < extra)
        shares.append(ordered[start:end])
        start = end
    return shares


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


def pin_event_loop(cores: list[int]) -> None:
    """Pin the calling thread, a worker's event loop, to `cores` (Linux applies affinity per thread). Unpinned, two
    workers' event loops were measured queued on one core while the other idled (docs/scaling.md). Every other
    thread runs on every core: gRPC's were started before; threads started later (model loads, which start
    OpenVINO's, image decoding, user code) reset their affinity when they begin, so that a worker serving every
    connection still uses every core; OpenVINO, asked before the pin, keeps counting every core, so that a model's own
    `INFERENCE_NUM_THREADS` is not capped by the loop's share."""
    import openvino as ov  # here only: the supervisor, which imports this module, never loads OpenVINO

    ov.Core().get_property("CPU", "FULL_DEVICE_NAME")  # OpenVINO reads the cores it may use once, at its first call
    everywhere = os.sched_getaffinity(0)

    def run_anywhere(*_: object) -> None:  # the first profiling event of a new thread; then profiling is off again
        sys.setprofile(None)
        os.sched_setaffinity(0, everywhere)

    threading.setprofile(run_anywhere)
    os.sched_setaffinity(0, cores)
