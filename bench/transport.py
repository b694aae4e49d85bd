"""How close pyovms comes to the transport's own limit, run by hand; prints a markdown table.

  python -m bench.transport [--seconds 5] [--repeat 2] [--mlserver] [--model dummy|heavy]

Each round starts each server once and measures it, interleaved so the machine's drifts fall on all alike:
- echo: a bare grpc.aio server (uvloop) whose ModelInfer answers the request's own bytes: the ceiling of a Python
  gRPC server, with no parsing at all;
- the same bare server parsing the request, then also running the model inline with OpenVINO (no validation, no
  statistics): the rungs between the echo and pyovms, which show where pyovms's cost per request goes;
- pyovms unary: ModelInfer, h2load over 4 connections with 8 in flight on `dummy` (the tiny model), 4 on `heavy`
  (600 KB requests);
- pyovms stream (h2load, `dummy` only): ModelStreamInfer, each HTTP/2 stream carrying 64 requests sent at once (the
  server runs up to 16 of a stream at a time), one stream at a time over one connection;
- pyovms stream (grpc.aio, `dummy` only): one ModelStreamInfer call keeping 8 requests unanswered (bench/loadgen.py);
- MLServer unary (`--mlserver`; its virtual environment is made on first use, bench/servers.py): as pyovms unary.

Reported: requests (inferences) per second and the server's CPU time per request (user + system of its process over
the measured run, from /proc). Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import openvino as ov

from pyovms.generated import grpc_predict_v2_pb2 as pb

from .h2load import h2load_run
from .loadgen import MODEL_STREAM_INFER, Result, grpc_stream_load
from .models import HEAVY_SHAPE, write_repository
from .run import request_body
from .servers import default_peer_dir, ensure_venv, free_port, start_mlserver, start_pyovms
from .shm import cpu_seconds
from .worker_designs import use_uvloop

MESSAGES_PER_STREAM = 64
BARE_SERVERS = {
    "echo": "echo (bare grpc.aio), unary",
    "parse": "bare grpc.aio + parsing the request",
    "openvino": "bare grpc.aio + parsing + OpenVINO inline",
}
"""The bare servers' kinds of work, and their rows."""
CONCURRENCY = {"dummy": 8, "heavy": 4}
"""Requests in flight (over 4 connections) for each model: the tiny one and the 600 KB one."""


def _bare_server(port: int, ready: multiprocessing.synchronize.Event, work: str, model_xml: str) -> None:
    """A bare grpc.aio ModelInfer doing `work` per call: "echo" answers the request's bytes; "parse" parses the
    ModelInferRequest and answers a fixed response; "openvino" also runs the model inline on its input (copied into
    the infer request's tensor, as pyovms does) and answers its output: the rungs between the echo and pyovms."""
    reply = pb.ModelInferResponse(model_name="bare").SerializeToString()
    request = None
    if work == "openvino":
        request = ov.Core().compile_model(model_xml, "CPU").create_infer_request()

    async def echo(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return data

    async def parse(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        pb.ModelInferRequest.FromString(data)
        return reply

    async def infer(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        message = pb.ModelInferRequest.FromString(data)
        tensor = request.get_input_tensor(0).data
        tensor[...] = np.frombuffer(message.raw_input_contents[0], tensor.dtype).reshape(tensor.shape)
        request.infer(share_outputs=True)
        answer = pb.ModelInferResponse(model_name="bare")
        answer.raw_output_contents.append(request.get_output_tensor(0).data.tobytes())
        return answer.SerializeToString()

    async def serve() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler({"echo": echo, "parse": parse, "openvino": infer}[work])
        server.add_registered_method_handlers("inference.GRPCInferenceService", {"ModelInfer": handler})
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    use_uvloop()
    asyncio.run(serve())


def _measured(pid: int, drive: Callable[[float], Result], seconds: float) -> tuple[float, float]:
    """req/s and server CPU ms per request of one run of `drive`, after a warm-up run."""
    drive(1.0)
    before = cpu_seconds(pid)
    result = drive(seconds)
    return result.rps, (cpu_seconds(pid) - before) / result.count * 1e3


def _unary(address: str, body: bytes, concurrency: int) -> Callable[[float], Result]:
    return lambda seconds: h2load_run(address, body, concurrency, seconds, 0, connections=4)


def _h2load_stream(address: str, body: bytes) -> Callable[[float], Result]:
    return lambda seconds: h2load_run(
        address, body, 1, seconds, 0, method=MODEL_STREAM_INFER, messages=MESSAGES_PER_STREAM
    )


def _aio_stream(address: str, body: bytes) -> Callable[[float], Result]:
    return lambda seconds: asyncio.run(grpc_stream_load(address, body, 8, seconds, warmup=0))


def measure_round(
    config: Path, model: str, body: bytes, seconds: float, mlserver: Path | None
) -> dict[str, tuple[float, float]]:
    rows: dict[str, tuple[float, float]] = {}
    concurrency = CONCURRENCY[model]
    model_xml = str(config.parent / model / "1" / "model.xml")
    for work, name in BARE_SERVERS.items():
        port = free_port()
        spawn = multiprocessing.get_context("spawn")
        ready = spawn.Event()
        bare = spawn.Process(target=_bare_server, args=(port, ready, work, model_xml))
        bare.start()
        try:
            ready.wait(60)
            rows[name] = _measured(bare.pid, _unary(f"127.0.0.1:{port}", body, concurrency), seconds)
        finally:
            bare.terminate()
            bare.join(30)
    peer = start_pyovms(config, [model], [])
    try:
        pid = peer.process.pid
        rows["pyovms unary"] = _measured(pid, _unary(peer.address, body, concurrency), seconds)
        if model == "dummy":
            rows["pyovms stream (h2load, 64 per stream)"] = _measured(pid, _h2load_stream(peer.address, body), seconds)
            rows["pyovms stream (grpc.aio, 8 in flight)"] = _measured(pid, _aio_stream(peer.address, body), seconds)
    finally:
        peer.stop()
    if mlserver is not None:
        with tempfile.TemporaryDirectory() as work:
            peer = start_mlserver(mlserver, Path(work), model, Path(model_xml))
            try:
                rows["MLServer unary"] = _measured(peer.process.pid, _unary(peer.address, body, concurrency), seconds)
            finally:
                peer.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--mlserver", action="store_true", help="also MLServer (a virtual environment on first use)")
    parser.add_argument("--model", choices=sorted(CONCURRENCY), default="dummy", help="heavy: 600 KB requests")
    args = parser.parse_args(argv)
    if subprocess.run(["h2load", "--version"], capture_output=True, check=False).returncode != 0:
        print("h2load is needed (Debian package nghttp2-client)", file=sys.stderr)
        return 1
    mlserver = ensure_venv("mlserver", default_peer_dir()) if args.mlserver else None
    if args.model == "heavy":
        body = request_body("heavy", "input", np.random.default_rng(0).random(HEAVY_SHAPE, dtype=np.float32))
    else:
        body = request_body("dummy", "b", np.arange(10, dtype=np.float32).reshape(1, 10))
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = write_repository(Path(tmp))
        for _ in range(args.repeat):
            for name, row in measure_round(config, args.model, body, args.seconds, mlserver).items():
                runs.setdefault(name, []).append(row)
    echo_rps = statistics.median(rps for rps, _ in runs[BARE_SERVERS["echo"]])
    print("| server | req/s (median) | runs | server CPU ms/request | share of echo's req/s |")
    print("|---|---|---|---|---|")
    for name, rows in runs.items():
        rps = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        each = ", ".join(f"{r:.0f}" for r, _ in rows)
        print(f"| {name} | {rps:.0f} | {each} | {cpu:.3f} | {100 * rps / echo_rps:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
