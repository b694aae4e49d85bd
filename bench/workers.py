"""`--grpc_workers N` scaling, run by hand; prints a markdown table (docs/performance.md).

  python -m bench.workers [--workers 1 2 4] [--seconds 5]

For each N (capped by the cores this process may use), one server launch with `--grpc_workers N`, driven by N client
processes (the grpc.aio client of bench/loadgen.py, each over 4 connections of its own) so that the client scales
with the server: the tiny model with 8 requests in flight per client, the heavy one (600 KB in, a few ms of
inference) with 2. Reported per point: req/s, p50 and p99 (the median of the clients' p50, the highest p99), the
server's CPU per request (supervisor and workers together) and the private memory of each worker (what one more
worker costs). On a machine with more cores the same command gives the scaling figure.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from .loadgen import Result, grpc_load
from .models import HEAVY_SHAPE, write_repository
from .run import request_body
from .servers import start_pyovms
from .shm import cpu_seconds
from .worker_designs import private_mb, server_pids

CONNECTIONS_PER_CLIENT = 4
IN_FLIGHT = {"dummy": 8, "heavy": 2}


def _body(model: str) -> bytes:
    if model == "dummy":
        return request_body("dummy", "b", np.arange(10, dtype=np.float32).reshape(1, 10))
    return request_body("heavy", "input", np.random.default_rng(0).random(HEAVY_SHAPE, dtype=np.float32))


def _client(job: tuple[str, str, float]) -> Result:
    address, model, seconds = job
    return asyncio.run(
        grpc_load(address, _body(model), IN_FLIGHT[model], seconds, warmup=0, connections=CONNECTIONS_PER_CLIENT)
    )


def measure(config: Path, workers: int, model: str, seconds: float) -> str:
    extra = ["--grpc_workers", str(workers)] if workers > 1 else []
    peer = start_pyovms(config, ["dummy", "heavy"], extra)
    try:
        pids = server_pids(peer.process.pid)
        with multiprocessing.get_context("spawn").Pool(workers) as clients:
            clients.map(_client, [(peer.address, model, 1.0)] * workers)  # warm-up
            before = sum(cpu_seconds(pid) for pid in pids)
            results = clients.map(_client, [(peer.address, model, seconds)] * workers)
            cpu = sum(cpu_seconds(pid) for pid in pids) - before
        count = sum(r.count for r in results)
        rps = sum(r.rps for r in results)
        p50 = statistics.median(r.p50 for r in results)
        p99 = max(r.p99 for r in results)
        memory = statistics.mean(private_mb(pid) for pid in (pids[1:] if workers > 1 else pids))
        connections = workers * CONNECTIONS_PER_CLIENT
        in_flight = workers * IN_FLIGHT[model]
        return (
            f"| {model} | {workers} | {connections} | {in_flight} | {rps:.0f} | {p50:.2f} | {p99:.2f} | "
            f"{cpu / count * 1e3:.3f} | {memory:.0f} |"
        )
    finally:
        peer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    from pyovms.workers.cores import available_cores

    cores = available_cores()
    counts = sorted({min(n, cores) for n in args.workers})
    print(f"cores available: {cores}; clients and server share them\n")
    print("| model | workers | connections | in flight | req/s | p50 ms | p99 ms | server CPU ms/request | MB/worker |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        config = write_repository(Path(tmp))
        for model in ("dummy", "heavy"):
            for workers in counts:
                print(measure(config, workers, model, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
