"""C custom nodes against the same node in Python and against a bare model, over gRPC with raw tensors; by hand.

  python -m bench.c_nodes [--seconds 5] [--repeat 3] [--crash]

- `model`: a bare model adding 1 (OpenVINO), the baseline;
- `c_node`: a pipeline of one C node doing the same (examples/custom_nodes/add_one.c, compiled here with `cc`);
- `python_node`: a pipeline of one Python node doing the same (numpy);

each for a [1,10] FP32 tensor and a [1,150528] one (600 KB): the latency each pipeline adds over the bare model at
concurrency 1 (requests to the three interleaved one by one), then throughput and latency at concurrency 1 and 8
(the three taking turns). Then, in-process, whether the library reads the request's array in place (the address it
got against the array's) and the cost of one C node call through the pipeline. `--crash` times a crash in a library
(to the process gone) and a restart (to ServerReady) with a C node pipeline and the demo models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops

from tests.support.c_libraries import EXAMPLES, build_library

from .loadgen import Result, grpc_load, median_result
from .run import request_body
from .servers import start_pyovms

WIDTHS = {"[1,10]": 10, "[1,150528] 600 KB": 150528}
SERVABLES = ("model", "c_node", "python_node")
PYTHON_NODE = """
def get_inputs_info(params, state):
    return {"in": ("FP32", [1, -1])}

def get_outputs_info(params, state):
    return {"out": ("FP32", [1, -1])}

def execute(inputs, params, state):
    return {"out": inputs["in"] + 1}
"""


def _build_add_one(path: Path) -> None:
    """in FP32 [1,-1] -> out = in + 1."""
    x = ops.parameter([1, -1], ov.Type.f32, name="in")
    y = ops.add(x, ops.constant(np.array([[1.0]], dtype=np.float32)))
    y.output(0).get_tensor().set_names({"out"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([y.output(0)], [x], "add_one"), str(path))


def _one_node(name: str, library: str) -> dict:
    return {
        "name": name,
        "inputs": ["in"],
        "nodes": [{"name": "node", "type": "custom", "library_name": library,
                   "inputs": [{"in": {"node_name": "request", "data_item": "in"}}],
                   "outputs": [{"data_item": "out", "alias": "out"}]}],
        "outputs": [{"out": {"node_name": "node", "data_item": "out"}}],
    }  # fmt: skip


def write_repository(root: Path) -> Path:
    _build_add_one(root / "model" / "1" / "model.xml")
    library = build_library("add_one", root / "lib", sources=EXAMPLES)
    (root / "python_add_one.py").write_text(PYTHON_NODE)
    config = {
        "model_config_list": [{"config": {"name": "model", "base_path": str(root / "model")}}],
        "custom_node_library_config_list": [
            {"name": "c_add_one", "base_path": str(library)},
            {"name": "python_add_one", "base_path": str(root / "python_add_one.py")},
        ],
        "pipeline_config_list": [_one_node("c_node", "c_add_one"), _one_node("python_node", "python_add_one")],
    }
    path = root / "config.json"
    path.write_text(json.dumps(config))
    return path


def added_latency(address: str, width: int, requests: int) -> dict[str, float]:
    """Median latency (ms) of each servable at concurrency 1, the servables' requests interleaved one by one, so
    that drifts of the machine (frequency, other processes) fall on all of them alike."""
    values = np.arange(width, dtype=np.float32).reshape(1, width)
    bodies = {servable: request_body(servable, "in", values) for servable in SERVABLES}
    latencies: dict[str, list[float]] = {servable: [] for servable in SERVABLES}
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 1 << 30)]) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for index in range(requests + 500):
            for servable, body in bodies.items():
                started = time.perf_counter()
                call(body, timeout=30)
                if index >= 500:  # after a warm-up (C nodes go inline after 16 calls)
                    latencies[servable].append(time.perf_counter() - started)
    return {servable: statistics.median(values) * 1e3 for servable, values in latencies.items()}


def measure(config: Path, seconds: float, repeat: int) -> None:
    server = start_pyovms(config, list(SERVABLES), [])
    try:
        print("| tensor | servable | p50 ms, c=1, interleaved | over the bare model |")
        print("|---|---|---|---|")
        for label, width in WIDTHS.items():
            medians = added_latency(server.address, width, 5000 if width < 1000 else 1500)
            for servable, p50 in medians.items():
                added = f"{(p50 - medians['model']) * 1e3:+.0f} µs" if servable != "model" else ""
                print(f"| {label} | {servable} | {p50:.3f} | {added} |", flush=True)
        print("\n| tensor | concurrency | servable | req/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|")
        for label, width in WIDTHS.items():
            values = np.arange(width, dtype=np.float32).reshape(1, width)
            for concurrency in (1, 8):
                runs: dict[str, list[Result]] = {servable: [] for servable in SERVABLES}
                for round_ in range(repeat):  # the servables take turns, in a rotating order
                    order = SERVABLES[round_ % 3 :] + SERVABLES[: round_ % 3]
                    for servable in order:
                        body = request_body(servable, "in", values)
                        runs[servable].append(asyncio.run(grpc_load(server.address, body, concurrency, seconds)))
                for servable in SERVABLES:
                    result = median_result(runs[servable])
                    print(f"| {label} | {concurrency} | {servable} | {result.rps:.0f} | {result.p50:.3f} | "
                          f"{result.p99:.3f} |", flush=True)  # fmt: skip
    finally:
        server.stop()


def in_process(root: Path) -> None:
    """The input the library reads is the array the pipeline got (no copy), and what one C node call costs."""
    from pyovms.control.model_manager import ModelManager
    from pyovms.custom_nodes.interface import LibraryConfig
    from pyovms.servables.pipelines.config import PipelineConfig

    library = build_library("faulty", root / "lib")  # mode "ok": copies `in` and returns the address it read from
    pipeline = _one_node("p", "faulty")
    pipeline["nodes"][0]["outputs"].append({"data_item": "address", "alias": "address"})
    pipeline["outputs"].append({"address": {"node_name": "node", "data_item": "address"}})

    async def run() -> None:
        manager = ModelManager()
        await manager.load([], [PipelineConfig.from_json(pipeline)], [LibraryConfig("faulty", str(library))])
        servable = manager.repository.pipelines["p"].versions[1].servable
        print("\n| tensor | library read the request's array in place | in-process pipeline call, median |")
        print("|---|---|---|")
        for label, width in WIDTHS.items():
            values = np.random.default_rng(0).random((1, width), dtype=np.float32)
            durations = []
            for _ in range(2000):
                started = time.perf_counter()
                outputs = {o.name: o for o in await servable.infer({"in": values})}
                durations.append(time.perf_counter() - started)
            in_place = int(outputs["address"].as_numpy()[0, 0]) == values.ctypes.data
            print(f"| {label} | {in_place} | {statistics.median(durations) * 1e6:.0f} µs |")
        manager.unload()

    asyncio.run(run())


def crash(root: Path) -> None:
    """Crash to exit, and a restart to ServerReady, for a server with the demo models and a C node pipeline."""
    from pyovms.repository.demo import build_demo_repository

    demo = json.loads(build_demo_repository(root / "demo").read_text())
    library = build_library("faulty", root / "lib")
    crash_pipeline = _one_node("crash", "faulty")
    crash_pipeline["nodes"][0]["params"] = {"mode": "crash"}
    config = {
        **demo,
        "custom_node_library_config_list": [{"name": "faulty", "base_path": str(library)}],
        "pipeline_config_list": [crash_pipeline],
    }
    for entry in config["model_config_list"]:
        entry["config"]["base_path"] = str(root / "demo" / entry["config"]["base_path"])
    path = root / "crash.json"
    path.write_text(json.dumps(config))
    body = request_body("crash", "in", np.ones((1, 10), np.float32))
    exits, starts = [], []
    for _ in range(3):
        started = time.perf_counter()
        server = start_pyovms(path, ["dummy", "crash"], [])
        starts.append(time.perf_counter() - started)
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            started = time.perf_counter()
            with contextlib.suppress(grpc.RpcError):  # UNAVAILABLE: the connection went with the process
                call(body, timeout=30)
            server.process.wait(30)
            exits.append(time.perf_counter() - started)
    print("\n| | median of 3 runs |")
    print("|---|---|")
    print(f"| crash to exit (request sent to the process gone) | {statistics.median(exits) * 1e3:.0f} ms |")
    print(f"| start to ServerReady (demo models and a C node pipeline) | {statistics.median(starts):.2f} s |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per servable and point (odd: median)")
    parser.add_argument("--crash", action="store_true", help="time a crash and a restart instead")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        if args.crash:
            crash(root)
            return 0
        measure(write_repository(root), args.seconds, args.repeat)
        in_process(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
