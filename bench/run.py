"""Benchmark scenarios over gRPC with raw tensors, run by hand; prints a markdown table.

  python -m bench.run s1 s2 s3 s4 [--seconds 5] [--repeat 3] [--nireq N]

- s1 tiny: `dummy` (b FP32 [1,10] -> a = b + 1), raw, concurrency 1, 8, 64
- s2 heavy: `heavy` (FP32 [1,3,224,224], ~600 KB per request, a few ms per inference), raw, concurrency 1, 4, 16
- s3 typed contents: s1 with `fp32_contents` instead of raw
- s4 the limit: the same models in-process through OpenVINO's AsyncInferQueue, same concurrency and nireq
- embedded: the same models through `pyovms.serve` in this process (`infer_async` from the benchmark's loop; the
  server runs on its own thread), same concurrency
- jpeg: a 224x224 JPEG (batch 1) as BYTES to the demo's image classifier (NHWC endpoint), over gRPC with the chosen
  client, next to OpenCV's decode-only rate of the same file on 1 and 2 threads
- dag: the two-node pipeline `dummy_chain` (dummy into dummy) against the client calling dummy twice in a row
- rest: s1 over REST, JSON and binary tensor extension, driven by h2load over HTTP/1.1 (one request per connection)
- s5 peers: s1 and s2 against MLServer and the KServe Python server running the same model (bench/servers.py; their
  virtual environments are created on first use under ~/.cache/pyovms-bench or $PYOVMS_BENCH_DIR)

Client and server share the machine's cores; each point is the median of `--repeat` runs. `--client h2load` drives
s1-s3 with h2load (a C HTTP/2 load generator, bench/h2load.py) instead of the grpc.aio client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov

from pyovms.generated import grpc_predict_v2_pb2 as pb

from .h2load import h2load_rest, h2load_run
from .loadgen import Result, decode_rate, drive, grpc_chain_load, grpc_load, median_result, openvino_load
from .models import HEAVY_SHAPE, photo_jpeg, write_repository
from .servers import default_peer_dir, ensure_venv, start_kserve, start_mlserver, start_pyovms

CONCURRENCY = {"dummy": (1, 8, 64), "heavy": (1, 4, 16), "classifier": (1, 2, 8), "dummy_chain": (1, 8, 64)}


def _tiny_input() -> np.ndarray:
    return np.arange(10, dtype=np.float32).reshape(1, 10)


def _heavy_input() -> np.ndarray:
    return np.random.default_rng(0).random(HEAVY_SHAPE, dtype=np.float32)


def request_body(model: str, name: str, array: np.ndarray, typed: bool = False) -> bytes:
    message = pb.ModelInferRequest(model_name=model)
    tensor = message.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
    if typed:
        tensor.contents.fp32_contents.extend(array.reshape(-1).tolist())
    else:
        message.raw_input_contents.append(array.tobytes())
    return message.SerializeToString()


def _second_call(answer: bytes) -> bytes:
    """dummy's request built from dummy's answer (its output `a` becomes the input `b`)."""
    response = pb.ModelInferResponse.FromString(answer)
    message = pb.ModelInferRequest(model_name="dummy")
    message.inputs.add(name="b", datatype="FP32", shape=list(response.outputs[0].shape))
    message.raw_input_contents.append(response.raw_output_contents[0])
    return message.SerializeToString()


def _jpeg_body() -> bytes:
    message = pb.ModelInferRequest(model_name="classifier")
    message.inputs.add(name="0", datatype="BYTES", shape=[1])
    data = photo_jpeg()
    message.raw_input_contents.append(len(data).to_bytes(4, "little") + data)
    return message.SerializeToString()


def _rest_bodies() -> list[tuple[str, bytes, list[str]]]:
    """s1's request over REST: JSON `data`, and the binary tensor extension in and out."""
    values = _tiny_input()
    tensor = {"name": "b", "shape": list(values.shape), "datatype": "FP32"}
    as_json = json.dumps({"inputs": [{**tensor, "data": values.reshape(-1).tolist()}]}).encode()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": values.nbytes}}],
            "outputs": [{"name": "a", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return [
        ("rest json", as_json, ["content-type: application/json"]),
        ("rest binary", header + values.tobytes(), [f"inference-header-content-length: {len(header)}"]),
    ]


def _row(scenario: str, model: str, concurrency: int, result: Result) -> str:
    return (
        f"| {scenario} | {model} | {concurrency} | {result.rps:.0f} | {result.p50:.3f} | {result.p90:.3f} | "
        f"{result.p99:.3f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenarios = ["s1", "s2", "s3", "s4", "s5", "rest", "jpeg", "dag", "embedded"]
    parser.add_argument("scenarios", nargs="+", choices=scenarios)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nireq", type=int, default=0, help="nireq of both the server and s4 (0: OpenVINO's optimal)")
    parser.add_argument("--client", choices=["grpc.aio", "h2load"], default="grpc.aio", help="load generator for s1-s3")
    parser.add_argument("--connections", type=int, default=1, help="client connections (spread over --grpc_workers)")
    parser.add_argument("--server-args", default="", help="extra pyovms flags, e.g. '--inline_threshold_us 0'")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gRPC metadata on every s1-s3 call (grpc.aio client), e.g. the header --server-args restricts",
    )
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pyovms-bench-"))
    config = write_repository(root, args.nireq)
    plans = {
        "s1": [("dummy", request_body("dummy", "b", _tiny_input()))],
        "s2": [("heavy", request_body("heavy", "input", _heavy_input()))],
        "s3": [("dummy", request_body("dummy", "b", _tiny_input(), typed=True))],
        "jpeg": [("classifier", _jpeg_body())],
        "dag": [("dummy_chain", request_body("dummy_chain", "b", _tiny_input()))],
    }
    print("| scenario | model | concurrency | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    results: dict[tuple[str, str, int], Result] = {}
    headers = tuple(tuple(header.split("=", 1)) for header in args.header)

    def measure(scenario: str, address: str, model: str, body: bytes, client: str = "grpc.aio") -> None:
        for concurrency in CONCURRENCY[model]:
            if client == "h2load":
                runs = [
                    h2load_run(address, body, concurrency, args.seconds, connections=args.connections)
                    for _ in range(args.repeat)
                ]
            else:
                runs = [
                    asyncio.run(
                        grpc_load(
                            address, body, concurrency, args.seconds, connections=args.connections, metadata=headers
                        )
                    )
                    for _ in range(args.repeat)
                ]
            results[scenario, model, concurrency] = median_result(runs)
            print(_row(scenario, model, concurrency, results[scenario, model, concurrency]), flush=True)

    over_grpc = [s for s in args.scenarios if s in plans]
    if over_grpc or "rest" in args.scenarios:
        models = ["dummy", "heavy", "classifier", "dummy_chain"]
        server = start_pyovms(config, models, args.server_args.split(), metadata=headers)
        try:
            for scenario in over_grpc:
                for model, body in plans[scenario]:
                    label = scenario if args.client == "grpc.aio" else f"{scenario} h2load"
                    measure(label, server.address, model, body, args.client)
            if "dag" in args.scenarios:
                for concurrency in CONCURRENCY["dummy"]:
                    runs = [
                        asyncio.run(
                            grpc_chain_load(server.address, plans["s1"][0][1], _second_call, concurrency, seconds)
                        )
                        for seconds in [args.seconds] * args.repeat
                    ]
                    print(_row("dag: dummy called twice", "dummy", concurrency, median_result(runs)), flush=True)
            if "rest" in args.scenarios:
                for label, body, headers in _rest_bodies():
                    for concurrency in CONCURRENCY["dummy"]:
                        runs = [
                            h2load_rest(server.rest_address, "/v2/models/dummy/infer", body, headers, concurrency, s)
                            for s in [args.seconds] * args.repeat
                        ]
                        print(_row(label, "dummy", concurrency, median_result(runs)), flush=True)
        finally:
            server.stop()
    if "s5" in args.scenarios:
        for peer_name, start in (("mlserver", start_mlserver), ("kserve", start_kserve)):
            python = ensure_venv(peer_name, default_peer_dir())
            for model, body in (*plans["s1"], *plans["s2"]):
                peer = start(python, root / peer_name / model, model, root / model / "1" / "model.xml")
                try:
                    measure(f"s5 {peer_name}", peer.address, model, body)
                finally:
                    peer.stop()
    if "jpeg" in args.scenarios:
        for threads in (1, 2):
            rate = statistics.median(decode_rate(photo_jpeg(), threads, args.seconds) for _ in range(args.repeat))
            print(f"| OpenCV decode only, {threads} thread(s) | 224x224 JPEG | - | {rate:.0f} | | | |", flush=True)
    if "s4" in args.scenarios:
        core = ov.Core()
        for model, array in (("dummy", _tiny_input()), ("heavy", _heavy_input())):
            compiled = core.compile_model(str(root / model / "1" / "model.xml"), "CPU")
            nireq = args.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            for concurrency in CONCURRENCY[model]:
                runs = [
                    openvino_load(compiled, {0: array}, concurrency, nireq, args.seconds) for _ in range(args.repeat)
                ]
                print(_row("s4", model, concurrency, median_result(runs)), flush=True)
    if "embedded" in args.scenarios:
        import pyovms

        with pyovms.serve(config) as server:  # the repository carries --nireq
            for model, name, array in (("dummy", "b", _tiny_input()), ("heavy", "input", _heavy_input())):
                for concurrency in CONCURRENCY[model]:
                    runs = [
                        asyncio.run(drive(lambda m=model, n=name, a=array: server.infer_async(m, {n: a}),
                                          concurrency, args.seconds, 1.0))
                        for _ in range(args.repeat)
                    ]  # fmt: skip
                    print(_row("embedded", model, concurrency, median_result(runs)), flush=True)
    _print_ratios(results)
    return 0


def _print_ratios(results: dict[tuple[str, str, int], Result]) -> None:
    """pyovms against each peer measured in this run: req/s ratio and p99 ratio."""
    lines = []
    for (scenario, model, concurrency), peer in sorted(results.items()):
        if not scenario.startswith("s5 "):
            continue
        ours = results.get(("s1" if model == "dummy" else "s2", model, concurrency))
        if ours is not None:
            lines.append(
                f"| {scenario[3:]} | {model} | {concurrency} | {ours.rps / peer.rps:.2f} | {ours.p99 / peer.p99:.2f} |"
            )
    if lines:
        print("\n| pyovms vs | model | concurrency | req/s ratio | p99 ratio |\n|---|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
