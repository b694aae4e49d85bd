"""How many cores `--grpc_workers auto` counts, and each worker's share of them (pyovms/workers/cores.py): CPU
affinity set on real processes, cgroup quotas read from cgroup-shaped files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyovms.workers.cores import cfs_cores, cgroup_cpu_quota, core_shares, cpu_max_cores

PARSE = (
    "from pyovms.cli import parse_settings; "
    "s = parse_settings(['--model_name', 'm', '--model_path', '/nowhere', '--port', '9', '--grpc_workers', 'auto']); "
    "print(s.grpc_workers, s.inference_threads)"
)


def _settings_on(cores: set[int]) -> str:
    """`--grpc_workers auto` parsed by a process that first restricts itself to `cores` (set in the child itself: a
    `preexec_fn` would run Python in a fork of this process, whose gRPC threads do not survive a fork)."""
    code = f"import os; os.sched_setaffinity(0, {sorted(cores)}); {PARSE}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_auto_starts_one_worker_per_core_the_process_may_use():
    assert _settings_on({0}) == "1 None"  # one process: OpenVINO keeps its own choice
    if len(os.sched_getaffinity(0)) >= 2:
        assert _settings_on({0, 1}) == "2 1"  # two workers, one OpenVINO thread each


@pytest.mark.parametrize(
    ("text", "cores"), [("max 100000", None), ("150000 100000", 1.5), ("200000 100000\n", 2.0), ("50000 100000", 0.5)]
)
def test_cgroup_v2_cpu_max(text, cores):
    assert cpu_max_cores(text) == cores


def test_cgroup_v1_cfs_quota():
    assert cfs_cores("-1\n", "100000\n") is None
    assert cfs_cores("300000", "100000") == 3.0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_tightest_quota_on_the_cgroup_path_counts(tmp_path):
    """A v2 quota on a parent of the process's cgroup limits it, and so does a v1 `cpu,cpuacct` one; the lower wins."""
    root = tmp_path / "sys"
    _write(root / "kubepods" / "cpu.max", "250000 100000")
    _write(root / "kubepods" / "pod1" / "cpu.max", "max 100000")
    _write(tmp_path / "v2", "0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(tmp_path / "v2", root) == 2.5
    _write(root / "cpu,cpuacct" / "docker" / "cpu.cfs_quota_us", "150000")
    _write(root / "cpu,cpuacct" / "docker" / "cpu.cfs_period_us", "100000")
    _write(tmp_path / "hybrid", "4:memory:/docker\n3:cpu,cpuacct:/docker\n0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(tmp_path / "hybrid", root) == 1.5
    _write(tmp_path / "none", "0::/elsewhere\n")
    assert cgroup_cpu_quota(tmp_path / "none", root) is None
    assert cgroup_cpu_quota(tmp_path / "missing", root) is None


@pytest.mark.parametrize(
    ("workers", "cores", "shares"),
    [
        (2, {0, 1}, [[0], [1]]),
        (3, set(range(8)), [[0, 1, 2], [3, 4, 5], [6, 7]]),
        (2, {3, 9, 5, 7}, [[3, 5], [7, 9]]),  # sorted, consecutive in the affinity, not in numbering
        (1, {0, 1, 2}, [[0, 1, 2]]),
        (3, {0, 1}, [[0], [1], [0]]),  # more workers than cores (the Python API allows it): cores reused
    ],
)
def test_core_shares_are_disjoint_and_even(workers, cores, shares):
    assert core_shares(workers, cores) == shares


def test_core_shares_default_to_this_process_affinity():
    shares = core_shares(2)
    assert sorted(core for share in shares for core in share) == sorted(os.sched_getaffinity(0))
