"""The cores this process may use (CPU affinity, cgroup CPU quota), for `--grpc_workers auto`, and each worker's
share of them for OpenVINO's threads."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
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
