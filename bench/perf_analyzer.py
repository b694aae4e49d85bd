"""Drive pyovms with Triton's perf_analyzer, the ecosystem's standard benchmark, over gRPC; prints a markdown table.

  python -m bench.perf_analyzer [--model dummy|heavy] [--concurrency 1 8 64] [--seconds 5] [--shared-memory system]
                                [--streaming]

perf_analyzer reads the model through ModelMetadata and ModelConfig and, because pyovms lists the `statistics`
extension, reports the server-side split (queue, compute input/infer/output) from ModelStatistics.

Where it comes from: the `tritonclient` 2.41 wheel (the test extra) ships the binary as `perf_analyzer`; it needs
`libcudart.so.12` (pip package nvidia-cuda-runtime-cu12, no GPU used) and `libb64.so.0d` (Debian's libb64-0d).
The PyPI package named perf-analyzer is an empty placeholder.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .models import write_repository
from .servers import start_pyovms

OUTPUT_SHARED_MEMORY_BYTES = 1 << 16
"""The region perf_analyzer gives each output (both benchmark models' outputs fit)."""
COLUMNS = {
    "req/s": "Inferences/Second",
    "p50 ms": "p50 latency",
    "p90 ms": "p90 latency",
    "p99 ms": "p99 latency",
    "server queue ms": "Server Queue",
    "server input ms": "Server Compute Input",
    "server infer ms": "Server Compute Infer",
    "server output ms": "Server Compute Output",
}


def _environment() -> dict[str, str]:
    """perf_analyzer's environment: the CUDA runtime library of the pip package on the loader path."""
    import nvidia.cuda_runtime  # pip install nvidia-cuda-runtime-cu12

    library = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
    previous = os.environ.get("LD_LIBRARY_PATH", "")
    return dict(os.environ, LD_LIBRARY_PATH=f"{library}:{previous}" if previous else str(library))


def run(
    address: str,
    model: str,
    concurrency: int,
    seconds: float,
    workdir: Path,
    shared_memory: str = "none",
    streaming: bool = False,
) -> dict[str, str]:
    """One perf_analyzer measurement at `concurrency` (tensors in system shared memory with `shared_memory`
    "system"; over ModelStreamInfer with `streaming`); its CSV row."""
    binary = shutil.which("perf_analyzer") or str(Path(sys.executable).parent / "perf_analyzer")
    report = workdir / f"{model}-{concurrency}.csv"
    command = [
        binary, "-m", model, "-u", address, "-i", "grpc", "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(int(seconds * 1000)), "-f", str(report), "--shared-memory", shared_memory,
        "--output-shared-memory-size", str(OUTPUT_SHARED_MEMORY_BYTES), *(["--streaming"] if streaming else []),
    ]  # fmt: skip
    subprocess.run(command, check=True, env=_environment(), stdout=subprocess.DEVNULL)
    with report.open() as file:
        return next(csv.DictReader(file))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["dummy", "heavy"], default="dummy")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="perf_analyzer's measurement interval")
    parser.add_argument("--server-args", default="", help="extra pyovms flags")
    parser.add_argument(
        "--shared-memory", choices=["none", "system"], default="none",
        help="system: perf_analyzer's inputs and outputs in system shared memory (the server gets --allow_client_shm)",
    )  # fmt: skip
    parser.add_argument("--streaming", action="store_true", help="requests over ModelStreamInfer streams")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pyovms-pa-"))
    server_args = args.server_args.split() + (["--allow_client_shm"] if args.shared_memory == "system" else [])
    server = start_pyovms(write_repository(root), [args.model], server_args)
    try:
        print("| model | concurrency | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 2) + "|")
        for concurrency in args.concurrency:
            row = run(server.address, args.model, concurrency, args.seconds, root, args.shared_memory, args.streaming)
            values = [row[COLUMNS["req/s"]]] + [f"{int(row[c]) / 1000:.3f}" for c in list(COLUMNS.values())[1:]]
            print(f"| {args.model} | {concurrency} | " + " | ".join(values) + " |", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
