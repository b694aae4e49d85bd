"""Start-up with and without the compiled-model cache, and how soon a version landing in a bucket is served; by hand.

  python -m bench.model_cache [--repeat 3]

- start to ServerReady for the demo image classifier and for a ~100 MB model (built here: 24 matmul layers with
  1024x1024 FP32 weights): without `--cache_dir`, with an empty cache (cold, which fills it) and with the filled one
  (warm); median of `--repeat` starts each;
- a model in S3 (moto's server on 127.0.0.1): from the upload of a new version's last object to ModelReady true for
  it, at the default poll interval (`--file_system_poll_wait_seconds 1`), `--repeat` versions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pyovms.generated import grpc_predict_v2_pb2 as pb
from pyovms.repository.demo import build_image_classifier

from .servers import free_port, start_pyovms


def build_large(path: Path, layers: int = 24, width: int = 1024) -> Path:
    """x FP32 [1, width] through `layers` matmuls, each with its own weights: about 4 MB per layer."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, width], ov.Type.f32, name="x")
    y = x
    for _ in range(layers):
        y = ops.matmul(y, ops.constant(rng.random((width, width), dtype=np.float32) * 0.01), False, False)
    y.output(0).get_tensor().set_names({"y"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([y.output(0)], [x], "large"), str(path), compress_to_fp16=False)
    return path


def _start_seconds(config: Path, model: str, extra: list[str]) -> float:
    started = time.perf_counter()
    server = start_pyovms(config, [model], extra)
    elapsed = time.perf_counter() - started
    server.stop()
    return elapsed


def cache_starts(root: Path, repeat: int) -> None:
    build_image_classifier(root / "classifier" / "1" / "model.xml")
    large = build_large(root / "large" / "1" / "model.xml")
    size = sum(f.stat().st_size for f in large.parent.iterdir()) / 1e6
    print("| model | no cache, s | cold cache, s | warm cache, s |")
    print("|---|---|---|---|")
    for model in ("classifier", "large"):
        config = root / f"{model}.json"
        config.write_text(
            json.dumps({"model_config_list": [{"config": {"name": model, "base_path": str(root / model)}}]})
        )
        plain, cold, warm = [], [], []
        for run in range(repeat):
            cache = root / f"cache-{model}-{run}"
            plain.append(_start_seconds(config, model, []))
            cold.append(_start_seconds(config, model, ["--cache_dir", str(cache)]))
            warm.append(_start_seconds(config, model, ["--cache_dir", str(cache)]))
        label = f"{model} ({size:.0f} MB)" if model == "large" else model
        print(f"| {label} | {statistics.median(plain):.2f} | {statistics.median(cold):.2f} | "
              f"{statistics.median(warm):.2f} |", flush=True)  # fmt: skip


def version_landing(root: Path, repeat: int) -> None:
    import boto3

    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      S3_ENDPOINT=f"127.0.0.1:{port}", PYOVMS_REMOTE_CACHE_DIR=str(root / "remote-cache"))  # fmt: skip
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    for _ in range(100):
        try:
            client.create_bucket(Bucket="bench")
            break
        except Exception:
            time.sleep(0.1)
    model = build_image_classifier(root / "landing" / "model.xml")
    files = [model, model.with_suffix(".bin")]

    def upload(version: int) -> None:
        for file in files:
            client.upload_file(str(file), "bench", f"m/{version}/{file.name}")

    upload(1)
    config = root / "landing.json"
    entry = {"name": "m", "base_path": "s3://bench/m", "model_version_policy": {"all": {}}}
    config.write_text(json.dumps({"model_config_list": [{"config": entry}]}))
    server = start_pyovms(config, ["m"], ["--file_system_poll_wait_seconds", "1"])
    delays = []
    try:
        with grpc.insecure_channel(server.address) as channel:
            ready = channel.unary_unary("/inference.GRPCInferenceService/ModelReady")
            for version in range(2, 2 + repeat):
                upload(version)
                landed = time.perf_counter()
                body = pb.ModelReadyRequest(name="m", version=str(version)).SerializeToString()
                while not _ready(ready, body):
                    time.sleep(0.01)
                delays.append(time.perf_counter() - landed)
    finally:
        server.stop()
        moto.terminate()
    print("\n| | median | max |")
    print("|---|---|---|")
    print(f"| version landing in S3 to ModelReady (poll 1 s, {repeat} versions) | {statistics.median(delays):.2f} s | "
          f"{max(delays):.2f} s |")  # fmt: skip


def _ready(call: grpc.UnaryUnaryMultiCallable, body: bytes) -> bool:
    try:
        return pb.ModelReadyResponse.FromString(call(body, timeout=10)).ready
    except grpc.RpcError:  # NOT_FOUND until the version is listed
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        cache_starts(Path(directory), args.repeat)
        version_landing(Path(directory), args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
