"""Graph streaming throughput, run by hand; prints a markdown table.

  python -m bench.streams [--streams 1 100] [--tokens 32] [--seconds 10]

A generative Python node (`OvmsPythonModel.execute` yields `--tokens` small tensors per request, over a LOOPBACK
back edge) serves ModelStreamInfer. Each stream sends a request, reads its `--tokens` responses, and sends the
next one (manual timestamps), for `--seconds`. Reported: responses per second over all streams, and the time from
a request to its first response (p50/p99; each stream's first request, which also opens it, is left out). Also
reported, for scale: unary ModelInfer on a one-node Python graph (upper-casing a short text) at 8 in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from pyovms.generated import grpc_predict_v2_pb2 as pb

from .loadgen import grpc_load
from .servers import start_pyovms

STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"

TOKENS_GRAPH = """
input_stream: "OVMS_PY_TENSOR:prompt"
output_stream: "OVMS_PY_TENSOR:token"
node {
  name: "generator"
  calculator: "PythonExecutorCalculator"
  input_side_packet: "PYTHON_NODE_RESOURCES:py"
  input_stream: "INPUT:prompt"
  input_stream: "LOOPBACK:loopback"
  input_stream_info: { tag_index: 'LOOPBACK:0', back_edge: true }
  input_stream_handler {
    input_stream_handler: "SyncSetInputStreamHandler",
    options { [mediapipe.SyncSetInputStreamHandlerOptions.ext] { sync_set { tag_index: "LOOPBACK:0" } } }
  }
  output_stream: "OUTPUT:token"
  output_stream: "LOOPBACK:loopback"
  node_options: { [type.googleapis.com / mediapipe.PythonExecutorCalculatorOptions]: { handler_path: "tokens.py" } }
}
"""

TOKENS_HANDLER = """
import numpy as np
from pyovms import Tensor


class OvmsPythonModel:
    def execute(self, inputs):
        count = int(np.array(inputs[0])[0])
        for index in range(count):
            yield [Tensor("token", np.array([index], dtype=np.int32))]
"""

UPPER_GRAPH = """
input_stream: "OVMS_PY_TENSOR:text"
output_stream: "OVMS_PY_TENSOR:result"
node {
  name: "upper"
  calculator: "PythonExecutorCalculator"
  input_side_packet: "PYTHON_NODE_RESOURCES:py"
  input_stream: "INPUT:text"
  output_stream: "OUTPUT:result"
  node_options: { [type.googleapis.com / mediapipe.PythonExecutorCalculatorOptions]: { handler_path: "upper.py" } }
}
"""

UPPER_HANDLER = """
from pyovms import Tensor


class OvmsPythonModel:
    def execute(self, inputs):
        return [Tensor("result", bytes(inputs[0]).upper())]
"""


def write_graphs(root: Path) -> Path:
    for name, graph, handler_name, handler in (
        ("tokens", TOKENS_GRAPH, "tokens.py", TOKENS_HANDLER),
        ("upper", UPPER_GRAPH, "upper.py", UPPER_HANDLER),
    ):
        (root / name).mkdir()
        (root / name / "graph.pbtxt").write_text(graph)
        (root / name / handler_name).write_text(handler)
    config = root / "config.json"
    config.write_text('{"model_config_list": [], "mediapipe_config_list": [{"name": "tokens"}, {"name": "upper"}]}')
    return config


def _prompt(tokens: int, timestamp: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="tokens")
    request.inputs.add(name="prompt", datatype="INT32", shape=[1])
    request.raw_input_contents.append(np.array([tokens], dtype=np.int32).tobytes())
    request.parameters["OVMS_MP_TIMESTAMP"].int64_param = timestamp
    return request


async def stream_load(address: str, streams: int, tokens: int, seconds: float) -> tuple[float, float, float]:
    """(responses/s, p50 ms, p99 ms to the first token) with `streams` concurrent streams."""
    firsts: list[float] = []
    counts = [0] * streams

    async def one(channel: grpc.aio.Channel, index: int, stop_at: float) -> None:
        call = channel.stream_stream(
            STREAM_INFER,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )()
        timestamp = 0
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            await call.write(_prompt(tokens, timestamp))
            for position in range(tokens):
                response = await call.read()
                if response.error_message:
                    raise RuntimeError(response.error_message)
                if position == 0 and timestamp:  # a stream's opening request is left out (its setup is not a token)
                    firsts.append(time.perf_counter() - sent)
                counts[index] += 1
            timestamp += tokens
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass

    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.gather(*(one(channel, i, time.perf_counter() + 1.0) for i in range(streams)))  # warm-up
        counts[:] = [0] * streams
        firsts.clear()
        began = time.perf_counter()
        await asyncio.gather(*(one(channel, i, began + seconds) for i in range(streams)))
        elapsed = time.perf_counter() - began
    p50, p99 = np.percentile(np.array(firsts) * 1e3, [50, 99])
    return sum(counts) / elapsed, float(p50), float(p99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_pyovms(write_graphs(Path(tmp)), ["tokens", "upper"], [])
        try:
            print("| streams | tokens per request | responses/s | first token p50 ms | p99 ms |")
            print("|---|---|---|---|---|")
            for streams in args.streams:
                rps, p50, p99 = asyncio.run(stream_load(server.address, streams, args.tokens, args.seconds))
                print(f"| {streams} | {args.tokens} | {rps:.0f} | {p50:.2f} | {p99:.2f} |")
            body = pb.ModelInferRequest(model_name="upper")
            body.inputs.add(name="text", datatype="UINT8", shape=[11])
            body.raw_input_contents.append(b"hello graph")
            unary = asyncio.run(grpc_load(server.address, body.SerializeToString(), 8, args.seconds))
            print(f"\nunary Python graph, 8 in flight: {unary.rps:.0f} req/s, p50 {unary.p50:.2f} ms", end="")
            print(f", p99 {unary.p99:.2f} ms")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
