"""Scenario `shm`: the heavy model (FP32 [1,3,224,224], ~600 KB per request) with its tensors in system shared memory,
next to the same requests inline over gRPC and the in-process limit (OpenVINO's AsyncInferQueue, as s4).

  python -m bench.shm [--seconds 5] [--repeat 3] [--concurrency 1 4 16] [--model heavy|dummy] [--server-args ...]

Each client worker has its own output region; all share one input region (the server only reads it). Besides
requests per second and latency, each pyovms row gives the server's CPU time per request (user + system time of the
server process over the run, from /proc), and the in-process row the benchmark process's CPU time per request, which
is what the inference itself costs: the difference is what serving costs on top of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import openvino as ov

from pyovms.generated import grpc_predict_v2_pb2 as pb

from .loadgen import MODEL_INFER, Result, median_result, openvino_load
from .models import HEAVY_SHAPE, write_repository
from .servers import start_pyovms

SHAPES = {"heavy": (HEAVY_SHAPE, "input", "output", 1000 * 4), "dummy": ((1, 10), "b", "a", 10 * 4)}
"""Per model: input shape, input name, output name, output bytes."""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def inline_body(model: str, array: np.ndarray) -> bytes:
    _, input_name, _, _ = SHAPES[model]
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name=input_name, datatype="FP32", shape=list(array.shape))
    message.raw_input_contents.append(array.tobytes())
    return message.SerializeToString()


def shm_body(model: str, byte_size: int, output_region: str) -> bytes:
    shape, input_name, output_name, output_bytes = SHAPES[model]
    message = pb.ModelInferRequest(model_name=model)
    tensor = message.inputs.add(name=input_name, datatype="FP32", shape=list(shape))
    tensor.parameters["shared_memory_region"].string_param = "input"
    tensor.parameters["shared_memory_byte_size"].int64_param = byte_size
    output = message.outputs.add(name=output_name)
    output.parameters["shared_memory_region"].string_param = output_region
    output.parameters["shared_memory_byte_size"].int64_param = output_bytes
    return message.SerializeToString()


async def drive_bodies(address: str, bodies: list[bytes], seconds: float, warmup: float = 1.0) -> Result:
    """One worker per body, each sending its body back to back for `seconds` after a warm-up."""
    options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        method = channel.unary_unary(MODEL_INFER)
        latencies: list[float] = []

        async def worker(body: bytes, stop_at: float, record: bool) -> None:
            while (start := time.perf_counter()) < stop_at:
                await method(body)
                if record:
                    latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker(body, time.perf_counter() + warmup, False) for body in bodies))
        began = time.perf_counter()
        await asyncio.gather(*(worker(body, began + seconds, True) for body in bodies))
        return Result.from_latencies(latencies, time.perf_counter() - began)


def measured(run: Callable[[], Result], pid: int) -> tuple[Result, float]:
    """A run and the CPU time process `pid` spent per request during it (ms)."""
    before = cpu_seconds(pid)
    result = run()
    return result, (cpu_seconds(pid) - before) / max(result.count, 1) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--model", choices=sorted(SHAPES), default="heavy")
    parser.add_argument("--server-args", default="", help="extra pyovms flags, e.g. '--inline_threshold_us 2000'")
    args = parser.parse_args(argv)
    shape, _, _, output_bytes = SHAPES[args.model]
    import tritonclient.grpc as grpcclient
    import tritonclient.utils.shared_memory as shm

    root = Path(tempfile.mkdtemp(prefix="pyovms-bench-shm-"))
    config = write_repository(root)
    array = np.random.default_rng(0).random(shape, dtype=np.float32)
    print("| path | concurrency | req/s | p50 ms | p99 ms | CPU ms/request |")
    print("|---|---|---|---|---|---|")
    compiled = ov.Core().compile_model(str(root / args.model / "1" / "model.xml"), "CPU")
    nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    limits = {}
    for concurrency in args.concurrency:
        runs = [
            measured(lambda c=concurrency: openvino_load(compiled, {0: array}, c, nireq, args.seconds), os.getpid())
            for _ in range(args.repeat)
        ]
        limits[concurrency] = median_result([r for r, _ in runs])
        cpu = float(np.median([c for _, c in runs]))
        print(_row("in-process (s4)", concurrency, limits[concurrency], cpu), flush=True)
    server = start_pyovms(config, [args.model], ["--allow_client_shm", *args.server_args.split()])
    client = grpcclient.InferenceServerClient(server.address)
    handles = []
    try:
        pid = server.process.pid
        handles.append(shm.create_shared_memory_region("input", f"/pyovms_bench_{os.getpid()}_in", array.nbytes))
        shm.set_shared_memory_region(handles[-1], [array])
        client.register_system_shared_memory("input", f"/pyovms_bench_{os.getpid()}_in", array.nbytes)
        for index in range(max(args.concurrency)):
            key = f"/pyovms_bench_{os.getpid()}_out{index}"
            handles.append(shm.create_shared_memory_region(f"out{index}", key, output_bytes))
            client.register_system_shared_memory(f"out{index}", key, output_bytes)
        for concurrency in args.concurrency:
            for label, bodies in (
                ("gRPC inline", [inline_body(args.model, array)] * concurrency),
                ("gRPC shared memory", [shm_body(args.model, array.nbytes, f"out{i}") for i in range(concurrency)]),
            ):
                runs = [
                    measured(lambda b=bodies: asyncio.run(drive_bodies(server.address, b, args.seconds)), pid)
                    for _ in range(args.repeat)
                ]
                result = median_result([r for r, _ in runs])
                cpu = float(np.median([c for _, c in runs]))
                share = result.rps / limits[concurrency].rps * 100
                print(_row(f"{label} ({share:.0f} % of in-process)", concurrency, result, cpu), flush=True)
        client.unregister_system_shared_memory()
    finally:
        for handle in handles:
            shm.destroy_shared_memory_region(handle)
        client.close()
        server.stop()
    return 0


def _row(label: str, concurrency: int, result: Result, cpu_ms: float) -> str:
    return f"| {label} | {concurrency} | {result.rps:.0f} | {result.p50:.3f} | {result.p99:.3f} | {cpu_ms:.3f} |"


if __name__ == "__main__":
    raise SystemExit(main())
