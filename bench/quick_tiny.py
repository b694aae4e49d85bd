"""A quick figure for the tiny `dummy` model over gRPC: p50 latency at concurrency 1, requests/s at 8.

Starts `pyovms --demo` on a free port, drives it with a grpc.aio client sending raw tensors, prints a table.
Usage: python bench/quick_tiny.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

from pyovms.grpc.generated import grpc_predict_v2_pb2 as pb

SERVICE = "/inference.GRPCInferenceService/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request() -> bytes:
    message = pb.ModelInferRequest(model_name="dummy")
    message.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    message.raw_input_contents.append(np.arange(10, dtype=np.float32).tobytes())
    return message.SerializeToString()


async def _worker(call, payload: bytes, stop_at: float, latencies: list[float]) -> None:
    while (start := time.perf_counter()) < stop_at:
        await call(payload)
        latencies.append(time.perf_counter() - start)


async def _measure(address: str, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(SERVICE + "ModelInfer")
        payload = _request()
        for _ in range(200):  # warm-up
            await call(payload)
        latencies: list[float] = []
        began = time.perf_counter()
        stop_at = began + seconds
        await asyncio.gather(*(_worker(call, payload, stop_at, latencies) for _ in range(concurrency)))
        return len(latencies) / (time.perf_counter() - began), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    port = _free_port()
    cache = tempfile.mkdtemp()
    server = subprocess.Popen(
        [sys.executable, "-m", "pyovms", "--demo", "--port", str(port), "--grpc_bind_address", "127.0.0.1"],
        env={"XDG_CACHE_HOME": cache, "PATH": "/usr/bin:/bin"},
        stderr=subprocess.DEVNULL,
    )
    try:
        address = f"127.0.0.1:{port}"
        ready = pb.ServerReadyResponse()
        with grpc.insecure_channel(address) as channel:
            probe = channel.unary_unary(
                SERVICE + "ServerReady", response_deserializer=pb.ServerReadyResponse.FromString
            )
            for _ in range(300):
                try:
                    ready = probe(b"", timeout=1)
                    if ready.ready:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        print("| concurrency | requests/s | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for concurrency in (1, 8):
            rps, latencies = asyncio.run(_measure(address, concurrency, args.seconds))
            latencies.sort()
            p50 = statistics.median(latencies) * 1e3
            p99 = latencies[int(len(latencies) * 0.99)] * 1e3
            print(f"| {concurrency} | {rps:.0f} | {p50:.3f} | {p99:.3f} |")
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
