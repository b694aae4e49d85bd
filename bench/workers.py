"""`--grpc_workers N` scaling, run by hand; prints a markdown table (docs/performance.md).

  python -m bench.workers [--workers 1 2 4] [--seconds 5] [--client h2load|grpc] [--server-args '...']

For each N (capped by the cores this process may use), one server launch with `--grpc_workers N`, driven by a client
that scales with N: h2load (when installed; its own cost is small, so the server's shows) with N threads, or N
processes of the grpc.aio client of bench/loadgen.py; 4 connections per N, the tiny model with 8 requests in flight
per N, the heavy one (600 KB in, a few ms of inference) with 2. Reported per point: req/s, p50 and p99 (for grpc, the
median of the clients' p50 and the highest p99), the server's CPU per request (supervisor and workers together), how
that CPU split over the workers (the kernel spreads connections by a hash: an uneven split is luck, not design) and
the private memory of each worker (what one more worker costs). On a machine with more cores the same command gives
the scaling figure.
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

from .h2load import available as h2load_available
from .h2load import h2load_run
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


def _load(model: str, workers: int, client: str) -> tuple[int, int]:
    """Connections and requests in flight of the load for `workers` (h2load needs a request per connection)."""
    in_flight = workers * IN_FLIGHT[model]
    connections = workers * CONNECTIONS_PER_CLIENT
    return (min(connections, in_flight) if client == "h2load" else connections), in_flight


def _drive(address: str, model: str, workers: int, seconds: float, client: str) -> tuple[float, float, float, int]:
    """req/s, p50, p99 and requests counted of one load that scales with `workers`."""
    if client == "h2load":
        connections, in_flight = _load(model, workers, client)
        result = h2load_run(address, _body(model), in_flight, seconds, 0, connections, threads=workers)
        return result.rps, result.p50, result.p99, result.count
    with multiprocessing.get_context("spawn").Pool(workers) as clients:
        results = clients.map(_client, [(address, model, seconds)] * workers)
    count = sum(r.count for r in results)
    return sum(r.rps for r in results), statistics.median(r.p50 for r in results), max(r.p99 for r in results), count


def measure(config: Path, workers: int, model: str, seconds: float, client: str, server_args: list[str]) -> str:
    extra = [*(["--grpc_workers", str(workers)] if workers > 1 else []), *server_args]
    peer = start_pyovms(config, ["dummy", "heavy"], extra)
    try:
        pids = server_pids(peer.process.pid)
        _drive(peer.address, model, workers, 1.0, client)  # warm-up
        before = [cpu_seconds(pid) for pid in pids]
        rps, p50, p99, count = _drive(peer.address, model, workers, seconds, client)
        spent = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
        first = 1 if workers > 1 else 0  # the supervisor, when there is one, comes first
        split = "/".join(f"{100 * c / sum(spent[first:]):.0f}" for c in spent[first:])
        memory = statistics.mean(private_mb(pid) for pid in pids[first:])
        connections, in_flight = _load(model, workers, client)
        return (
            f"| {model} | {workers} | {connections} | {in_flight} | {rps:.0f} | {p50:.2f} | {p99:.2f} | "
            f"{sum(spent) / count * 1e3:.3f} | {split} | {memory:.0f} |"
        )
    finally:
        peer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client", choices=("h2load", "grpc"), default="h2load" if h2load_available() else "grpc")
    parser.add_argument("--server-args", default="", help="more pyovms flags, e.g. '--worker_affinity none'")
    args = parser.parse_args(argv)
    from pyovms.workers.cores import available_cores

    cores = available_cores()
    counts = sorted({min(n, cores) for n in args.workers})
    print(f"cores available: {cores}; clients ({args.client}) and server share them\n")
    print(
        "| model | workers | connections | in flight | req/s | p50 ms | p99 ms | server CPU ms/request "
        "| CPU split % | MB/worker |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        config = write_repository(Path(tmp))
        for model in ("dummy", "heavy"):
            for workers in counts:
                print(measure(config, workers, model, args.seconds, args.client, args.server_args.split()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
