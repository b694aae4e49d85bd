"""Load generators: a grpc.aio client with N requests in flight, and OpenVINO's own async API in-process."""

from __future__ import annotations

import asyncio
import collections
import itertools
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np
import openvino as ov

from pyovms.generated import grpc_predict_v2_pb2 as pb

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


@dataclass(frozen=True)
class Result:
    """Requests per second and latency percentiles (ms) of one run."""

    rps: float
    p50: float
    p90: float
    p99: float
    count: int

    @classmethod
    def from_latencies(cls, latencies: list[float], elapsed: float) -> Result:
        ms = np.array(latencies) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(len(latencies) / elapsed, float(p50), float(p90), float(p99), len(latencies))


def median_result(results: list[Result]) -> Result:
    """Several runs of one point as one: the median of each figure, the counts added up."""
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50 for r in results),
        statistics.median(r.p90 for r in results),
        statistics.median(r.p99 for r in results),
        sum(r.count for r in results),
    )


async def drive(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float, warmup: float) -> Result:
    """Keep `concurrency` calls in flight for `seconds` after a warm-up; time each call."""
    latencies: list[float] = []

    async def worker(stop_at: float, record: bool) -> None:
        while (start := time.perf_counter()) < stop_at:
            await call()
            if record:
                latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(time.perf_counter() + warmup, False) for _ in range(concurrency)))
    began = time.perf_counter()
    await asyncio.gather(*(worker(began + seconds, True) for _ in range(concurrency)))
    return Result.from_latencies(latencies, time.perf_counter() - began)


async def grpc_load(
    address: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
    connections: int = 1,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Result:
    """ModelInfer with `body` (a serialized ModelInferRequest) against the server at `address`, each call with
    `metadata` (an API key, a restricted group's header).

    Calls go round-robin over `connections` channels, each its own TCP connection (a local subchannel pool), so
    that `--grpc_workers` servers, balanced per connection by the kernel, all get work.
    """
    options = [
        ("grpc.max_send_message_length", 1 << 30),
        ("grpc.max_receive_message_length", 1 << 30),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(connections)]
    methods = itertools.cycle([channel.unary_unary(MODEL_INFER) for channel in channels])
    try:
        return await drive(lambda: next(methods)(body, metadata=metadata or None), concurrency, seconds, warmup)
    finally:
        for channel in channels:
            await channel.close()


async def grpc_stream_load(
    address: str, body: bytes, in_flight: int, seconds: float, warmup: float = 1.0, streams: int = 1
) -> Result:
    """ModelStreamInfer on a model: `streams` streams, each keeping `in_flight` requests (`body`) unanswered; a
    request's latency runs from its write to its response (a model stream answers in order)."""
    latencies: list[float] = []
    options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]

    async def one(channel: grpc.aio.Channel, record_from: float, stop_at: float) -> None:
        call = channel.stream_stream(MODEL_STREAM_INFER)()
        sent: collections.deque[float] = collections.deque()
        for _ in range(in_flight):
            sent.append(time.perf_counter())
            await call.write(body)
        first = True
        while sent:
            answer = await call.read()
            now = time.perf_counter()
            if first:  # one check per stream: an answer carrying an error would be counted as served
                error = pb.ModelStreamInferResponse.FromString(answer).error_message
                if error:
                    raise RuntimeError(f"the stream answered an error: {error}")
                first = False
            start = sent.popleft()
            if now >= record_from:
                latencies.append(now - start)
            if now < stop_at:
                sent.append(time.perf_counter())
                await call.write(body)
        await call.done_writing()

    async with grpc.aio.insecure_channel(address, options=options) as channel:
        began = time.perf_counter() + warmup
        await asyncio.gather(*(one(channel, began, began + seconds) for _ in range(streams)))
    return Result.from_latencies(latencies, time.perf_counter() - began)


async def grpc_chain_load(
    address: str, first: bytes, second: Callable[[bytes], bytes], concurrency: int, seconds: float, warmup: float = 1.0
) -> Result:
    """Two ModelInfer calls one after the other per measured request: `first`, then `second(first's answer)`."""
    options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        method = channel.unary_unary(MODEL_INFER)

        async def call() -> None:
            await method(second(await method(first)))

        return await drive(call, concurrency, seconds, warmup)


def openvino_load(
    compiled: ov.CompiledModel, inputs: dict, concurrency: int, nireq: int, seconds: float, warmup: float = 1.0
) -> Result:
    """The in-process limit: `concurrency` requests kept in flight through an AsyncInferQueue of `nireq` jobs."""
    queue = ov.AsyncInferQueue(compiled, nireq)
    slots = threading.Semaphore(concurrency)
    latencies: list[float] = []
    record = [False]

    def done(request: ov.InferRequest, started: float) -> None:
        request.get_output_tensor(0).data.tobytes()  # what a server copies out
        if record[0]:
            latencies.append(time.perf_counter() - started)
        slots.release()

    queue.set_callback(done)

    def run(until: float) -> None:
        while time.perf_counter() < until:
            slots.acquire()
            queue.start_async(inputs, time.perf_counter(), share_inputs=True)
        queue.wait_all()

    run(time.perf_counter() + warmup)
    record[0] = True
    began = time.perf_counter()
    run(began + seconds)
    return Result.from_latencies(latencies, time.perf_counter() - began)


def decode_rate(data: bytes, threads: int, seconds: float) -> float:
    """Images per second OpenCV decodes (IMREAD_UNCHANGED, as the server does) on `threads` threads."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8)

    def loop(until: float) -> int:
        count = 0
        while time.perf_counter() < until:
            cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
            count += 1
        return count

    loop(time.perf_counter() + 0.5)
    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(loop, [began + seconds] * threads))
    return total / (time.perf_counter() - began)
