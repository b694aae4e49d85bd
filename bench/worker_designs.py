"""The two shapes `--grpc_workers N` could take, measured on this machine before one is built (docs/scaling.md).

  python -m bench.worker_designs [--seconds 5]

- *replicas*: N full servers sharing the port, each with its models; control calls relayed, counters merged on read.
  Per request it costs what one server costs today: `full` below.
- *fronts and one engine*: N processes only translate gRPC; one engine owns the models. Per request it costs a
  front's gRPC work, one local round trip (`hop`) and the engine's work (`engine`); one engine process does all the
  engine work, so its CPU per request sets the ceiling of the whole server.

Each figure is measured in its own process launch:
- full: pyovms over gRPC, the tiny model, 8 in flight over 4 connections; server CPU per request (all its
  processes) with 1 and 2 workers;
- engine: the core alone, `Server.infer` on the tiny model in-process (the same server, called on its own event
  loop, no gRPC): CPU per request;
- front: a grpc.aio server that only parses the request and answers a fixed response, 8 in flight: CPU per request;
- hop: a front and an engine process joined by a Unix socket (asyncio, 8 in flight, length-prefixed frames): CPU per
  request on each side and the round trip's p50, for the tiny tensor inline and a 600 KB tensor inline and through
  shared memory (only a 16-byte descriptor on the socket);
- memory: private memory (what one more process adds) of a full server with the benchmark's models against a
  front-only process.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import struct
import sys
import tempfile
import time
from multiprocessing import shared_memory
from pathlib import Path

import grpc
import numpy as np

from pyovms.generated import grpc_predict_v2_pb2 as pb

from .loadgen import grpc_load
from .models import HEAVY_SHAPE, write_repository
from .run import request_body
from .servers import free_port, start_pyovms
from .shm import cpu_seconds

CONCURRENCY = 8
CONNECTIONS = 4
FRAME = struct.Struct("<IQ")
"""A hop frame's header: payload length, request id."""
STATS = (1 << 64) - 1
"""The id of the last frame: an empty payload, answered with the engine's CPU time so far."""
SLOT = struct.Struct("<QQ")
"""A shared memory descriptor: offset and length of the tensor in the block."""
TINY = np.arange(10, dtype=np.float32).tobytes()
LARGE = np.random.default_rng(0).random(HEAVY_SHAPE, dtype=np.float32).tobytes()
OUTPUT_BYTES = 4000
"""What the engine answers for a large tensor: the heavy model's output (1000 FP32)."""


def private_mb(pid: int) -> float:
    """Memory only this process holds (private pages: what one more such process adds), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return sum(int(fields[name].split()[0]) for name in ("Private_Clean", "Private_Dirty")) / 1024


def server_pids(pid: int) -> list[int]:
    """A server's process and its children (the workers of `--grpc_workers`)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(p) for p in path.read_text().split())] if path.exists() else [pid]


def full_server(config: Path, workers: int, seconds: float) -> dict[str, float]:
    """pyovms over gRPC: req/s, server CPU per request (supervisor and workers), resident memory per process."""
    extra = ["--grpc_workers", str(workers)] if workers > 1 else []
    peer = start_pyovms(config, ["dummy", "heavy"], extra)
    try:
        pids = server_pids(peer.process.pid)
        body = request_body("dummy", "b", np.frombuffer(TINY, np.float32).reshape(1, 10))
        asyncio.run(grpc_load(peer.address, body, CONCURRENCY, 1.0, warmup=0.5, connections=CONNECTIONS))
        before = sum(cpu_seconds(p) for p in pids)
        result = asyncio.run(grpc_load(peer.address, body, CONCURRENCY, seconds, warmup=0, connections=CONNECTIONS))
        cpu = sum(cpu_seconds(p) for p in pids) - before
        servers = pids[1:] if workers > 1 else pids
        return {
            "rps": result.rps,
            "cpu_ms": cpu / result.count * 1e3,
            "p50_ms": result.p50,
            "private_mb": statistics.mean(private_mb(p) for p in servers),
        }
    finally:
        peer.stop()


def engine_alone(config: Path, requests: int) -> dict[str, float]:
    """CPU per request of the core's infer on the tiny model, on the server's own loop, without any front end."""
    import pyovms
    from pyovms.in_process import build_request

    server = pyovms.serve(str(config))
    try:
        request = build_request("dummy", {"b": np.frombuffer(TINY, np.float32).reshape(1, 10)})
        core = server._core

        async def burst(count: int) -> None:
            async def worker() -> None:
                for _ in range(count // CONCURRENCY):
                    await core.infer(request)

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        server._call(burst(2000))
        started, cpu = time.perf_counter(), time.process_time()
        server._call(burst(requests))
        cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
        return {"cpu_ms": cpu / requests * 1e3, "rps": requests / elapsed}
    finally:
        server.stop()


def _front_only(port: int, ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event) -> None:
    """A grpc.aio server whose ModelInfer parses the request and answers a fixed response: a front's own work."""
    answer = pb.ModelInferResponse(model_name="dummy", id="")
    answer.outputs.add(name="a", datatype="FP32", shape=[1, 10])
    answer.raw_output_contents.append(TINY)

    async def infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        message = pb.ModelInferRequest.FromString(request)
        np.frombuffer(message.raw_input_contents[0], np.float32)
        return answer.SerializeToString()

    async def serve() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await server.stop(0)

    use_uvloop()
    asyncio.run(serve())


def front_alone(seconds: float) -> dict[str, float]:
    port = free_port()
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    process = multiprocessing.Process(target=_front_only, args=(port, ready, stop))
    process.start()
    try:
        ready.wait(30)
        body = request_body("dummy", "b", np.frombuffer(TINY, np.float32).reshape(1, 10))
        address = f"127.0.0.1:{port}"
        asyncio.run(grpc_load(address, body, CONCURRENCY, 1.0, warmup=0.5, connections=CONNECTIONS))
        before = cpu_seconds(process.pid)
        result = asyncio.run(grpc_load(address, body, CONCURRENCY, seconds, warmup=0, connections=CONNECTIONS))
        cpu = cpu_seconds(process.pid) - before
        return {"cpu_ms": cpu / result.count * 1e3, "rps": result.rps, "private_mb": private_mb(process.pid)}
    finally:
        stop.set()
        process.join(30)


def use_uvloop() -> None:
    """Run asyncio on uvloop when installed, as pyovms does by default."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def _engine(path: str, block_name: str, ready: multiprocessing.synchronize.Event) -> None:
    """The engine side of a hop: answers each frame; a descriptor payload (16 bytes) names a tensor in shared memory,
    read in place, and the answer is written into the block after it."""
    block = shared_memory.SharedMemory(block_name)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length, ident = FRAME.unpack(await reader.readexactly(FRAME.size))
                payload = await reader.readexactly(length)
                if length == 0:  # the end: report this process's CPU time
                    answer = struct.pack("<d", time.process_time())
                elif length == SLOT.size:
                    offset, size = SLOT.unpack(payload)
                    np.frombuffer(block.buf, np.uint8, size, offset)  # the tensor, read in place
                    out = offset + size
                    block.buf[out : out + OUTPUT_BYTES] = bytes(OUTPUT_BYTES)
                    answer = SLOT.pack(out, OUTPUT_BYTES)
                else:
                    answer = payload[:OUTPUT_BYTES] if length > OUTPUT_BYTES else payload
                writer.write(FRAME.pack(len(answer), ident) + answer)
        except asyncio.IncompleteReadError:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_unix_server(handle, path)
        ready.set()
        async with server:
            await server.serve_forever()

    use_uvloop()
    asyncio.run(serve())


async def _front(path: str, block: shared_memory.SharedMemory, payload: bytes, shm: bool, seconds: float):
    reader, writer = await asyncio.open_unix_connection(path)
    waiting: dict[int, asyncio.Future[bytes]] = {}

    async def read_answers() -> None:
        while True:
            length, ident = FRAME.unpack(await reader.readexactly(FRAME.size))
            waiting.pop(ident).set_result(await reader.readexactly(length))

    async def call(ident: int, slot: int) -> bytes:
        future = asyncio.get_running_loop().create_future()
        waiting[ident] = future
        if shm:  # the front copies the received tensor into its slot, the engine reads it there
            offset = slot * (len(payload) + OUTPUT_BYTES)
            block.buf[offset : offset + len(payload)] = payload
            writer.write(FRAME.pack(SLOT.size, ident) + SLOT.pack(offset, len(payload)))
            out, size = SLOT.unpack(await future)
            return bytes(block.buf[out : out + size])  # copied out into the response
        writer.write(FRAME.pack(len(payload), ident) + payload)
        return await future

    reading = asyncio.ensure_future(read_answers())
    latencies: list[float] = []
    counter = iter(range(1 << 62))

    async def worker(slot: int, stop_at: float, record: bool) -> None:
        while (start := time.perf_counter()) < stop_at:
            await call(next(counter), slot)
            if record:
                latencies.append(time.perf_counter() - start)

    async def engine_cpu() -> float:
        future = asyncio.get_running_loop().create_future()
        waiting[STATS] = future
        writer.write(FRAME.pack(0, STATS))
        return struct.unpack("<d", await future)[0]

    await asyncio.gather(*(worker(i, time.perf_counter() + 0.5, False) for i in range(CONCURRENCY)))
    engine_before = await engine_cpu()
    cpu, began = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i, began + seconds, True) for i in range(CONCURRENCY)))
    front_cpu = time.process_time() - cpu
    elapsed = time.perf_counter() - began
    engine_used = await engine_cpu() - engine_before
    reading.cancel()
    writer.close()
    count = len(latencies)
    return {
        "front_us": front_cpu / count * 1e6,
        "engine_us": engine_used / count * 1e6,
        "p50_us": float(np.percentile(np.array(latencies) * 1e6, 50)),
        "rps": count / elapsed,
    }


def hop(payload: bytes, shm: bool, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "engine.sock")
        block = shared_memory.SharedMemory(create=True, size=CONCURRENCY * (len(payload) + OUTPUT_BYTES))
        ready = multiprocessing.Event()
        engine = multiprocessing.Process(target=_engine, args=(path, block.name, ready), daemon=True)
        engine.start()
        try:
            ready.wait(30)
            use_uvloop()
            return asyncio.run(_front(path, block, payload, shm, seconds))
        finally:
            engine.terminate()
            engine.join(10)
            block.close()
            block.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    multiprocessing.set_start_method("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        config = write_repository(Path(tmp))
        one = full_server(config, 1, args.seconds)
        two = full_server(config, 2, args.seconds)
        engine = engine_alone(config, int(args.seconds * 4000))
    front = front_alone(args.seconds)
    hops = {
        "tiny inline": hop(TINY, False, args.seconds),
        "600 KB inline": hop(LARGE, False, args.seconds),
        "600 KB shared memory": hop(LARGE, True, args.seconds),
    }
    print(f"cores available: {len(os.sched_getaffinity(0))}; client and servers share them\n")
    print("| measured | req/s | CPU per request | p50 | private memory per process |")
    print("|---|---|---|---|---|")
    print(f"| full server, 1 process | {one['rps']:.0f} | {one['cpu_ms']:.3f} ms | {one['p50_ms']:.2f} ms | "
          f"{one['private_mb']:.0f} MB |")  # fmt: skip
    print(f"| full server, 2 workers (replicas today) | {two['rps']:.0f} | {two['cpu_ms']:.3f} ms | "
          f"{two['p50_ms']:.2f} ms | {two['private_mb']:.0f} MB each |")  # fmt: skip
    print(f"| core alone (an engine's work) | {engine['rps']:.0f} | {engine['cpu_ms']:.3f} ms | | |")
    print(f"| gRPC front alone (parse, answer) | {front['rps']:.0f} | {front['cpu_ms']:.3f} ms | | "
          f"{front['private_mb']:.0f} MB |")  # fmt: skip
    for name, figures in hops.items():
        print(f"| hop, {name} | {figures['rps']:.0f} | front {figures['front_us']:.0f} µs + engine "
              f"{figures['engine_us']:.0f} µs | {figures['p50_us']:.0f} µs | |")  # fmt: skip
    tiny = hops["tiny inline"]
    front_work = one["cpu_ms"] - engine["cpu_ms"]  # all a full server does outside the core: what a front would do
    fronts_engine_ms = one["cpu_ms"] + (tiny["front_us"] + tiny["engine_us"]) / 1e3
    ceiling = 1e3 / (engine["cpu_ms"] + tiny["engine_us"] / 1e3)
    print()
    print(f"a front's work (full server minus the core): {front_work:.3f} ms per request")
    print(f"replicas: {one['cpu_ms']:.3f} ms of CPU per request, no added latency, "
          f"{one['private_mb']:.0f} MB per extra process (with its own models)")  # fmt: skip
    print(f"fronts and one engine: at least {fronts_engine_ms:.3f} ms of CPU per request (the hop's encoding of "
          f"requests not counted), +{tiny['p50_us']:.0f} µs per request, {front['private_mb']:.0f} MB per extra front; "
          f"one engine tops out near {ceiling:.0f} req/s of the tiny model however many fronts and cores")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
