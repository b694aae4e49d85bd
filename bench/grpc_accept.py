"""How fast a bare grpc.aio server takes new calls while busy streams saturate it (no pyovms code involved).

  python -m bench.grpc_accept [--busy 750] [--open 250] [--seconds 25] [--delay 8] [--registration registered]
                              [--other-method]

A grpc.aio server (uvloop when installed, as pyovms runs) echoes on a stream-stream method and answers a unary one.
`--busy` streams, over 3 client processes, echo as fast as answers come back for `--seconds`. After `--delay`
seconds, an idle client process opens `--open` new streams (one message each) and another one sends unary calls
one after the other; both report their latencies. `--registration`: every method registered (pyovms's choice),
every one through a generic handler, or only the stream methods registered; `--other-method` opens the new streams
on a second stream method. This is the
experiment behind docs/reliability.md's note on new streams under saturation.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from typing import Any

import grpc
import numpy as np

SERVICE = "bench.Echo"


def _server(ports: Any, registration: str) -> None:
    async def echo(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            yield request

    async def ping(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def main() -> None:
        server = grpc.aio.server()
        methods = {
            "Stream": grpc.stream_stream_rpc_method_handler(echo),
            "Other": grpc.stream_stream_rpc_method_handler(echo),
            "Unary": grpc.unary_unary_rpc_method_handler(ping),
        }
        if registration == "generic":
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
        elif registration == "streams":  # stream methods registered, unary ones through a generic handler
            unary = {"Unary": methods.pop("Unary")}
            server.add_registered_method_handlers(SERVICE, methods)
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, unary),))
        else:
            server.add_registered_method_handlers(SERVICE, methods)
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


def _busy(port: int, streams: int, seconds: float) -> None:
    async def one(channel: grpc.aio.Channel, stop_at: float) -> None:
        call = channel.stream_stream(f"/{SERVICE}/Stream")()
        while time.monotonic() < stop_at:
            await call.write(b"busy")
            await call.read()
        await call.done_writing()

    async def main() -> None:
        stop_at = time.monotonic() + seconds
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.gather(*(one(channel, stop_at) for _ in range(streams)))

    asyncio.run(main())


def _open(port: int, streams: int, method: str, results: Any) -> None:
    async def one(channel: grpc.aio.Channel, latencies: list[float]) -> None:
        started = time.perf_counter()
        call = channel.stream_stream(f"/{SERVICE}/{method}")()
        await call.write(b"new")
        await call.read()
        latencies.append(time.perf_counter() - started)
        await call.done_writing()

    async def main() -> list[float]:
        latencies: list[float] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            await asyncio.gather(*(one(channel, latencies) for _ in range(streams)))
        return latencies

    results.put(("stream openings", asyncio.run(main())))


def _unary(port: int, seconds: float, results: Any) -> None:
    async def main() -> list[float]:
        latencies: list[float] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = channel.unary_unary(f"/{SERVICE}/Unary")
            await method(b"warm")
            stop_at = time.monotonic() + seconds
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                await method(b"ping", timeout=60)
                latencies.append(time.perf_counter() - started)
        return latencies

    results.put(("unary calls", asyncio.run(main())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=750)
    parser.add_argument("--open", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--delay", type=float, default=8.0)
    parser.add_argument("--registration", choices=["registered", "generic", "streams"], default="registered")
    parser.add_argument("--other-method", action="store_true")
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    ports, results = context.Queue(), context.Queue()
    server = context.Process(target=_server, args=(ports, args.registration), daemon=True)
    server.start()
    port = ports.get()
    busy = [context.Process(target=_busy, args=(port, args.busy // 3, args.seconds)) for _ in range(3)]
    for process in busy:
        process.start()
    time.sleep(args.delay)
    method = "Other" if args.other_method else "Stream"
    measuring = [
        context.Process(target=_open, args=(port, args.open, method, results)),
        context.Process(target=_unary, args=(port, args.seconds - args.delay, results)),
    ]
    for process in measuring:
        process.start()
    for _ in measuring:
        name, latencies = results.get()
        ms = np.array(latencies or [0.0]) * 1e3
        p50, p99 = np.percentile(ms, [50, 99])
        print(f"{name}: {len(latencies)}, p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {ms.max():.0f} ms", flush=True)
    for process in busy + measuring:
        process.join()
    server.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
