"""Drive pyovms with h2load (Debian package nghttp2-client), a C HTTP/2 load generator, so that the client's own
cost does not hide the server's: a pre-framed gRPC body, N streams in flight over one or more connections; or, for
REST, HTTP/1.1 (`--h1`) with N connections of one request each.

h2load counts HTTP 200 as success even when `grpc-status` is not 0, so one request is checked with grpcio first.
Per-request latencies come from h2load's --log-file.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import grpc
import numpy as np

from .loadgen import MODEL_INFER, Result


def available() -> bool:
    return shutil.which("h2load") is not None


def check_answer(address: str, body: bytes) -> None:
    """Raise unless the server answers `body` with grpc-status OK."""
    with grpc.insecure_channel(address) as channel:
        channel.unary_unary(MODEL_INFER)(body, timeout=30)


def h2load_run(
    address: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
    connections: int = 1,
    threads: int = 1,
    method: str = MODEL_INFER,
    messages: int = 1,
) -> Result:
    """gRPC `method` (ModelInfer by default): req/s and latency percentiles of `concurrency` streams over
    `connections` connections, driven by `threads` client threads. Each HTTP/2 stream carries `messages` copies of
    `body` sent at once (more than one: a ModelStreamInfer stream), and counts, in req/s and count, as that many
    requests; its latency is the whole stream's."""
    connections = min(connections, concurrency)
    check_answer(address, body)
    framed = (b"\x00" + struct.pack(">I", len(body)) + body) * messages  # gRPC length-prefixed messages
    headers = ["content-type: application/grpc", "te: trailers"]
    options = ["-t", str(min(threads, connections)), "-c", str(connections), "-m", str(concurrency // connections)]
    result = _run(f"http://{address}{method}", framed, headers, options, seconds, warmup)
    if messages == 1:
        return result
    return Result(result.rps * messages, result.p50, result.p90, result.p99, result.count * messages)


def h2load_rest(
    address: str, path: str, body: bytes, headers: list[str], concurrency: int, seconds: float, warmup: float = 1.0
) -> Result:
    """REST over HTTP/1.1: `concurrency` connections with one request in flight each."""
    url = f"http://{address}{path}"
    request = urllib.request.Request(url, data=body, method="POST")
    for header in headers:
        name, _, value = header.partition(":")
        request.add_header(name, value.strip())
    with urllib.request.urlopen(request, timeout=30) as answer:  # raises unless 2xx
        answer.read()
    return _run(url, body, headers, ["--h1", "-t", "1", "-c", str(concurrency), "-m", "1"], seconds, warmup)


def _run(url: str, body: bytes, headers: list[str], options: list[str], seconds: float, warmup: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "body"
        data.write_bytes(body)
        log = Path(tmp) / "log"
        command = [
            "h2load", url, *options, "-D", f"{round(seconds)}s", "--warm-up-time", f"{round(warmup)}s",
            "-d", str(data), "--log-file", str(log), *[item for h in headers for item in ("-H", h)],
        ]  # fmt: skip
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    statuses = {row[1] for row in rows}
    if statuses != {"200"}:
        raise RuntimeError(f"h2load saw HTTP statuses {statuses}:\n{output}")
    finished = re.search(r"finished in [^,]+, ([0-9.]+) req/s", output)
    if finished is None:
        raise RuntimeError(f"no throughput in h2load's output:\n{output}")
    ms = np.array([int(row[2]) for row in rows]) / 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Result(float(finished.group(1)), float(p50), float(p90), float(p99), len(rows))
