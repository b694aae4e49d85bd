"""Sustained load on one server: many gRPC streams, unary gRPC and REST clients at once; errors, p99 and memory.

  python -m bench.soak [--seconds 60] [--settle 10] [--streams 1000] [--unary 4] [--rest 8] [--processes 4]
                       [--stream-rate 1] [--unary-rate 20] [--rest-rate 100]

The server serves `dummy` (b FP32 [1,10] -> a = b + 1) and `upper`, a one-node Python graph. Every stream sends a
text to `upper` and waits for its answer before the next one; unary clients call `dummy` over gRPC, REST clients
over HTTP/1.1 with JSON. Each client sends at most its `--*-rate` requests per second (a steady load below the
server's capacity, as in production); a rate of 0 sends as fast as answers come back (saturation). Streams are
spread over `--processes` client processes; unary and REST clients run in one more each. Every answer is checked.
Reported per kind: requests and errors over the whole run, and p50/p99/max latency of the requests sent after
`--settle` seconds (the first answer of each stream, which waits for the server to take the new call, has a row of
its own, over the whole run); and the server's RSS averaged over the first 10 s after `--settle` seconds and over the
last 10 s (a sixth of shorter runs, at least a second), and the growth between them.
tests/e2e/test_soak.py runs a short version of this in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import numpy as np

from pyovms.generated import grpc_predict_v2_pb2 as pb
from pyovms.repository.demo import build_dummy

from .servers import start_pyovms
from .streams import UPPER_GRAPH, UPPER_HANDLER

STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


OPENINGS = "gRPC stream openings"
"""The first answer of each stream: it waits for the server to take the new call."""


@dataclass
class Kind:
    """Outcomes of one kind of client: (sent at, seconds to the answer) per answered request, and errors."""

    latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def row(self, name: str, since: float) -> str:
        """Requests and errors over the whole run; latencies of the requests sent from `since` on."""
        measured = [seconds for at, seconds in self.latencies if at >= since] or [0.0]
        ms = np.array(measured) * 1e3
        p50, p99 = np.percentile(ms, [50, 99])
        return f"| {name} | {len(self.latencies)} | {len(self.errors)} | {p50:.2f} | {p99:.2f} | {ms.max():.2f} |"


@dataclass
class SoakResult:
    kinds: dict[str, Kind]
    rss_first_mb: float
    rss_last_mb: float
    measured_from: float
    """perf_counter() when settling ended: latencies are reported from then on (stream openings: all)."""

    @property
    def errors(self) -> list[str]:
        return [error for kind in self.kinds.values() for error in kind.errors]

    @property
    def growth(self) -> float:
        return self.rss_last_mb / self.rss_first_mb - 1

    def table(self) -> str:
        lines = ["| clients | requests | errors | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
        lines += [
            kind.row(name, -math.inf if name == OPENINGS else self.measured_from) for name, kind in self.kinds.items()
        ]
        lines.append(
            f"\nserver RSS: {self.rss_first_mb:.1f} MB at the start, {self.rss_last_mb:.1f} MB at the end "
            f"({self.growth * 100:+.2f} %)"
        )
        return "\n".join(lines)


def write_repository(root: Path) -> Path:
    build_dummy(root / "dummy" / "1" / "model.xml")
    (root / "upper").mkdir()
    (root / "upper" / "graph.pbtxt").write_text(UPPER_GRAPH)
    (root / "upper" / "upper.py").write_text(UPPER_HANDLER)
    config = {"model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}],
              "mediapipe_config_list": [{"name": "upper"}]}  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


@dataclass(frozen=True)
class Rates:
    """Requests per second each client sends at most, by kind; 0 = as fast as answers come back."""

    stream: float = 1.0
    unary: float = 20.0
    rest: float = 100.0


SATURATE = Rates(0, 0, 0)


class Pace:
    """Spaces one client's requests `1 / rate` seconds apart, from a random phase so that thousands of clients
    do not send in lockstep. A client that fell behind sends at once and then keeps the spacing (no burst)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate if rate else 0.0
        self.next_at = time.perf_counter() + random.uniform(0, self.interval)

    async def wait(self) -> None:
        if not self.interval:
            return
        delay = self.next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        self.next_at = max(self.next_at, time.perf_counter()) + self.interval


async def client_load(
    address: str,
    rest_address: str,
    seconds: float,
    streams: int,
    unary: int,
    rest: int,
    first_stream: int = 0,
    rates: Rates = SATURATE,
) -> dict[str, Kind]:
    """One client process's share of the load, for `seconds`: outcomes by kind of client."""
    kinds = {"gRPC streams": Kind(), OPENINGS: Kind(), "gRPC unary": Kind(), "REST": Kind()}
    stop_at = time.perf_counter() + seconds
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    unary_body = pb.ModelInferRequest(model_name="dummy")
    unary_body.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    unary_body.raw_input_contents.append(x.tobytes())
    rest_body = json.dumps(
        {"inputs": [{"name": "b", "datatype": "FP32", "shape": [1, 10], "data": x.ravel().tolist()}]}
    )

    async def one_stream(channel: grpc.aio.Channel, index: int) -> None:
        kind = kinds[OPENINGS]
        call = channel.stream_stream(
            STREAM_INFER,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )()
        sent = 0
        pace = Pace(rates.stream)
        try:
            while sent == 0 or time.perf_counter() < stop_at:  # every stream sends at least once, however late
                await pace.wait()
                text = f"stream {index} message {sent}".encode()
                request = pb.ModelInferRequest(model_name="upper")
                request.inputs.add(name="text", datatype="UINT8", shape=[len(text)])
                request.raw_input_contents.append(text)
                started = time.perf_counter()
                await call.write(request)
                response = await call.read()
                kind.latencies.append((started, time.perf_counter() - started))
                if response.error_message or response.infer_response.raw_output_contents[0] != text.upper():
                    kind.errors.append(response.error_message or "wrong answer")
                sent += 1
                kind = kinds["gRPC streams"]
            await call.done_writing()
            await call.read()
        except grpc.RpcError as exc:
            kind.errors.append(f"{exc.code()}: {exc.details()} (stream {index}, after {sent} requests)")

    async def one_unary(channel: grpc.aio.Channel) -> None:
        kind = kinds["gRPC unary"]
        method = channel.unary_unary(MODEL_INFER, response_deserializer=pb.ModelInferResponse.FromString)
        body = unary_body.SerializeToString()
        pace = Pace(rates.unary)
        while time.perf_counter() < stop_at:
            await pace.wait()
            started = time.perf_counter()
            try:
                response = await method(body, timeout=30)
                kind.latencies.append((started, time.perf_counter() - started))
                if np.frombuffer(response.raw_output_contents[0], np.float32).tolist() != (x + 1).ravel().tolist():
                    kind.errors.append("wrong answer")
            except grpc.RpcError as exc:
                kind.errors.append(f"{exc.code()}: {exc.details()}")

    async def one_rest(session: aiohttp.ClientSession) -> None:
        kind = kinds["REST"]
        url = f"http://{rest_address}/v2/models/dummy/infer"
        pace = Pace(rates.rest)
        while time.perf_counter() < stop_at:
            await pace.wait()
            started = time.perf_counter()
            async with session.post(url, data=rest_body) as response:
                body = await response.json()
            kind.latencies.append((started, time.perf_counter() - started))
            if response.status != 200 or body["outputs"][0]["data"] != (x + 1).ravel().tolist():
                kind.errors.append(f"HTTP {response.status}: {body}")

    async with grpc.aio.insecure_channel(address) as channel, aiohttp.ClientSession() as session:
        await asyncio.gather(
            *(one_stream(channel, first_stream + i) for i in range(streams)),
            *(one_unary(channel) for _ in range(unary)),
            *(one_rest(session) for _ in range(rest)),
        )
    return kinds


def _client_process(*args: object) -> dict[str, Kind]:
    return asyncio.run(client_load(*args))  # type: ignore[arg-type]


def _share(total: int, index: int, parts: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def soak(
    address: str,
    rest_address: str,
    pid: int,
    seconds: float,
    streams: int,
    unary: int,
    rest: int,
    processes: int = 4,
    settle: float = 0.0,
    rates: Rates = SATURATE,
) -> SoakResult:
    """Run the mixed load for `settle` + `seconds` against a server serving `write_repository`'s models, sampling
    the server's RSS: the first window starts after `settle` (all streams open, caches warm), the last one ends the
    run; each lasts 10 s (a sixth of shorter runs, at least 1 s). The streams are spread over `processes` client
    processes; unary and REST clients run in one more each, so that no client process's own new calls wait behind
    its streams."""
    context = multiprocessing.get_context("spawn")
    samples: list[tuple[float, float]] = []
    with ProcessPoolExecutor(processes + 2, mp_context=context) as pool:
        futures = [
            pool.submit(_client_process, address, rest_address, settle + seconds, 0, unary, 0, 0, rates),
            pool.submit(_client_process, address, rest_address, settle + seconds, 0, 0, rest, 0, rates),
        ]
        first = 0
        for index in range(processes):
            share = _share(streams, index, processes)
            futures.append(
                pool.submit(_client_process, address, rest_address, settle + seconds, share, 0, 0, first, rates)
            )
            first += share
        began = time.perf_counter()
        while not all(future.done() for future in futures):
            samples.append((time.perf_counter(), rss_mb(pid)))
            time.sleep(0.2)
        results = [future.result() for future in futures]
    kinds = {name: Kind() for name in results[0]}
    for result in results:
        for name, kind in result.items():
            kinds[name].latencies += kind.latencies
            kinds[name].errors += kind.errors
    ended = began + settle + seconds
    window = max(1.0, min(10.0, seconds / 6))
    first_window = [mb for at, mb in samples if began + settle <= at <= began + settle + window]
    last_window = [mb for at, mb in samples if ended - window <= at <= ended]
    rss_first, rss_last = float(np.mean(first_window)), float(np.mean(last_window or first_window))
    return SoakResult(kinds, rss_first, rss_last, began + settle)


def _cpus(text: str) -> set[int]:
    return {int(cpu) for cpu in text.split(",")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--unary", type=int, default=4)
    parser.add_argument("--rest", type=int, default=8)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load before the first RSS window")
    parser.add_argument("--processes", type=int, default=4, help="client processes sharing the load")
    parser.add_argument("--stream-rate", type=float, default=Rates.stream, help="requests/s per stream, 0 = max")
    parser.add_argument("--unary-rate", type=float, default=Rates.unary, help="requests/s per unary client, 0 = max")
    parser.add_argument("--rest-rate", type=float, default=Rates.rest, help="requests/s per REST client, 0 = max")
    parser.add_argument("--server-args", default="", help="extra pyovms flags, e.g. '--grpc_workers 2'")
    parser.add_argument("--server-cpus", default="", help="pin the server to these CPUs, e.g. '0'")
    parser.add_argument("--client-cpus", default="", help="pin the clients to these CPUs, e.g. '1'")
    args = parser.parse_args(argv)
    if args.client_cpus:  # the client processes inherit it
        os.sched_setaffinity(0, _cpus(args.client_cpus))
    with tempfile.TemporaryDirectory() as tmp:
        server = start_pyovms(write_repository(Path(tmp)), ["dummy", "upper"], args.server_args.split())
        try:
            pid = server.process.pid
            if args.server_cpus:
                for thread in os.listdir(f"/proc/{pid}/task"):
                    os.sched_setaffinity(int(thread), _cpus(args.server_cpus))
            load = (args.streams, args.unary, args.rest, args.processes, args.settle)
            rates = Rates(args.stream_rate, args.unary_rate, args.rest_rate)
            result = soak(server.address, server.rest_address, pid, args.seconds, *load, rates=rates)
        finally:
            server.stop()
    print(result.table())
    for error in sorted(set(result.errors))[:10]:
        print("error:", error)
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
