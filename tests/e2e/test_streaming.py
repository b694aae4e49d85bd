"""ModelStreamInfer on graphs (spec §6.3): generative nodes, in-stream errors, graph errors that end the stream,
timestamps, half-close, cancellation and 100 concurrent streams, with tritonclient's stream API and raw stubs."""

from __future__ import annotations

import asyncio
import queue
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ..support import graph_repository
from ..support.server_process import serve_config, wait_for


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("streams")


@pytest.fixture(scope="module")
def server(root):
    process = serve_config(root, graph_repository.build(root))
    yield process
    process.stop()


def _request(
    model: str, texts: list[bytes] | None = None, timestamp: int | str | None = None, **extra
) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    if texts is not None:
        request.inputs.add(name=extra.pop("input", "text"), datatype="BYTES", shape=[len(texts)])
        request.raw_input_contents.append(b"".join(len(t).to_bytes(4, "little") + t for t in texts))
    if isinstance(timestamp, str):
        request.parameters["OVMS_MP_TIMESTAMP"].string_param = timestamp
    elif timestamp is not None:
        request.parameters["OVMS_MP_TIMESTAMP"].int64_param = timestamp
    for key, value in extra.items():
        request.parameters[key].string_param = value
    return request


def _words(response: service_pb2.ModelStreamInferResponse) -> tuple[bytes, int]:
    """The single text of a response and its timestamp."""
    raw = response.infer_response.raw_output_contents[0]
    size = int.from_bytes(raw[:4], "little")
    return raw[4 : 4 + size], response.infer_response.parameters["OVMS_MP_TIMESTAMP"].int64_param


class Stream:
    """A raw ModelStreamInfer call fed from a queue, so requests can wait for earlier responses."""

    def __init__(self, stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        self._queue: queue.Queue[service_pb2.ModelInferRequest | None] = queue.Queue()
        self.call = stub.ModelStreamInfer(iter(self._queue.get, None), timeout=60)

    def send(self, request: service_pb2.ModelInferRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def next(self) -> service_pb2.ModelStreamInferResponse:
        return next(self.call)


def test_generative_node_yields_responses_with_increasing_timestamps(server):
    stream = Stream(server.stub)
    stream.send(_request("words", [b"one two three four"], timestamp=10))
    assert [_words(stream.next()) for _ in range(4)] == [(b"one", 10), (b"two", 11), (b"three", 12), (b"four", 13)]
    stream.send(_request("words", [b"again here"], timestamp=100))
    assert [_words(stream.next()) for _ in range(2)] == [(b"again", 100), (b"here", 101)]
    stream.close()
    assert list(stream.call) == []
    assert stream.call.code() == grpc.StatusCode.OK


def test_every_response_names_the_graph(server):
    stream = Stream(server.stub)
    stream.send(_request("upper", [b"abc"]))
    response = stream.next()
    stream.close()
    assert response.error_message == ""
    assert response.infer_response.model_name == "upper"
    assert response.infer_response.model_version == "1"
    assert response.infer_response.id == ""
    assert list(stream.call) == []


def test_bad_requests_are_answered_in_stream_and_the_stream_goes_on(server):
    stream = Stream(server.stub)
    stream.send(_request("upper", [b"first"]))
    assert _words(stream.next())[0] == b"FIRST"
    bad_input = _request("upper", [b"x"])
    bad_input.inputs[0].name = "other"
    stream.send(bad_input)
    assert stream.next().error_message == (
        "Unexpected input - other is unexpected; partial deserialization of subsequent requests"
    )
    stream.send(_request("words", [b"x"]))
    assert stream.next().error_message == (
        "Subsequent request with incorrect servable name - name: words; version: ; validate subsequent requests"
    )
    wrong_version = _request("upper", [b"x"])
    wrong_version.model_version = "2"
    stream.send(wrong_version)
    assert stream.next().error_message.startswith("Subsequent request with incorrect servable version - ")
    stream.send(_request("upper", [b"x"], timestamp="soon"))
    assert stream.next().error_message == (
        "Malformed packet timestamp - Invalid timestamp format in request parameter OVMS_MP_TIMESTAMP. Should be "
        "int64; partial deserialization of subsequent requests"
    )
    stream.send(_request("upper", [b"last"]))
    assert _words(stream.next())[0] == b"LAST"
    stream.close()
    assert list(stream.call) == []
    assert stream.call.code() == grpc.StatusCode.OK


def test_bad_first_request_is_answered_in_stream(server):
    stream = Stream(server.stub)
    bad = _request("upper", [b"x"])
    bad.raw_input_contents[0] = b"\x05\0\0\0ab"  # framing that lies is still passed as is to Python
    bad.inputs[0].datatype = "FP32"
    stream.send(bad)
    assert stream.next().error_message == (
        "Invalid content size of tensor proto - Invalid Python tensor buffer size. Actual: 6; Expected: 4; "
        "input name: text; partial deserialization of first request"
    )
    stream.close()
    assert list(stream.call) == []


def test_stream_on_an_unknown_name_ends_with_not_found(server):
    """Streams on models and pipelines are tests/e2e/test_model_streams.py's."""
    with pytest.raises(grpc.RpcError) as info:
        list(server.stub.ModelStreamInfer(iter([_request("nope", [b"x"])]), timeout=10))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert (
        info.value.details()
        == "Mediapipe graph definition with requested name is not found - name: nope is no servable"
    )


def test_a_graph_named_later_in_a_model_stream_is_answered_as_model_infer_would(server):
    """A stream is a graph's when its first request names one; in any other stream a graph answers each request on
    its own, as ModelInfer."""
    dummy = _request("dummy", None)
    dummy.inputs.add(name="b", datatype="FP32", shape=[1, 10]).contents.fp32_contents.extend(range(10))
    responses = list(server.stub.ModelStreamInfer(iter([dummy, _request("upper", [b"one"])]), timeout=30))
    assert [r.error_message for r in responses] == ["", ""]
    assert list(responses[0].infer_response.outputs[0].shape) == [1, 10]
    assert _words(responses[1])[0] == b"ONE"


def test_stream_on_a_graph_that_did_not_load(server):
    with pytest.raises(grpc.RpcError) as info:
        list(server.stub.ModelStreamInfer(iter([_request("broken", [b"x"])]), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details().startswith("Mediapipe is not loaded yet - name: broken;")


def test_node_error_ends_the_stream_with_its_status(server):
    stream = Stream(server.stub)
    stream.send(_request("moody", [b"fine"]))
    names = {stream.next().infer_response.outputs[0].name for _ in range(2)}
    assert names == {"out", "length"}
    stream.send(_request("moody", [b"boom"]))
    with pytest.raises(grpc.RpcError) as info:
        stream.next()
    stream.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        info.value.details()
        == "Mediapipe execution failed. MP status - node moody_node: ValueError: boom went the node"
    )


def test_timestamp_going_backwards_ends_the_stream(server):
    stream = Stream(server.stub)
    stream.send(_request("upper", [b"a"], timestamp=10))
    assert _words(stream.next()) == (b"A", 10)
    stream.send(_request("upper", [b"b"], timestamp=5))
    with pytest.raises(grpc.RpcError) as info:
        stream.next()
    stream.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "Mediapipe execution failed. MP status - Packet timestamp mismatch on stream text: timestamp 5 is not "
        "greater than the previous one 10"
    )


def test_new_input_while_generating_ends_the_stream_with_resource_exhausted(server):
    stream = Stream(server.stub)
    stream.send(_request("slow_words", [b" ".join([b"w"] * 20)], timestamp=1))
    assert _words(stream.next()) == (b"w", 1)
    stream.send(_request("slow_words", [b"more"], timestamp=1000))
    with pytest.raises(grpc.RpcError) as info:
        while True:
            stream.next()
    stream.close()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details().startswith("Node is already processing data. Create new stream for another generative")


def test_half_close_drains_the_graph(server):
    stream = Stream(server.stub)
    stream.send(_request("slow_words", [b"a b c d e"], timestamp=1))
    stream.close()
    assert [_words(r)[0] for r in stream.call] == [b"a", b"b", b"c", b"d", b"e"]
    assert stream.call.code() == grpc.StatusCode.OK


def test_cancellation_stops_the_graph_and_frees_it(server, root):
    marker = Path(root) / "slow_words" / "closed.txt"
    before = marker.read_text().count("closed") if marker.exists() else 0
    stream = Stream(server.stub)
    stream.send(_request("slow_words", [b" ".join([b"w"] * 200)], timestamp=1))
    assert _words(stream.next()) == (b"w", 1)
    stream.call.cancel()
    wait_for(lambda: marker.exists() and marker.read_text().count("closed") > before, timeout=10)
    result = grpcclient.InferenceServerClient(server.address).infer("upper", [_bytes_input("text", [b"still serving"])])
    assert result.as_numpy("result").tolist() == [b"STILL SERVING"]


def test_side_packets_come_from_the_first_request(server):
    stream = Stream(server.stub)
    first = service_pb2.ModelInferRequest(model_name="greeting")
    first.parameters["greeting"].string_param = "hi there"
    first.parameters["OVMS_MP_TIMESTAMP"].int64_param = 1
    first.inputs.add(name="tick", datatype="INT32", shape=[1]).contents.int_contents.append(0)
    stream.send(first)
    second = service_pb2.ModelInferRequest(model_name="greeting")
    second.parameters["OVMS_MP_TIMESTAMP"].int64_param = 2
    second.inputs.add(name="tick", datatype="INT32", shape=[1]).contents.int_contents.append(0)
    stream.send(second)
    assert [_words(stream.next()) for _ in range(2)] == [(b"hi there", 1), (b"hi there", 2)]
    stream.close()
    assert list(stream.call) == []


def _bytes_input(name: str, texts: list[bytes]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object))
    return tensor


def test_tritonclient_stream_api(server):
    client = grpcclient.InferenceServerClient(server.address)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("words", [_bytes_input("text", [b"streamed from tritonclient"])])
        received = [results.get(timeout=10) for _ in range(3)]
        assert [error for _, error in received] == [None, None, None]
        assert [result.as_numpy("word").tolist() for result, _ in received] == [
            [b"streamed"],
            [b"from"],
            [b"tritonclient"],
        ]
        client.async_stream_infer("words", [_bytes_input("wrong", [b"x"])])
        result, error = results.get(timeout=10)
        assert result is None
        assert "Unexpected input - wrong is unexpected; partial deserialization of subsequent requests" in str(error)
    finally:
        client.stop_stream()


def test_hundred_concurrent_streams(server):
    """100 streams at once on one server: each sends its own texts and gets exactly its own answers back."""

    async def one(stub, index: int) -> list[bytes]:
        requests = [_request("upper", [f"stream {index} message {n}".encode()], timestamp=n) for n in range(3)]
        requests.append(_request("words", None))  # a wrong name on the way: answered in-stream
        answers = []
        async for response in stub.ModelStreamInfer(iter(requests), timeout=60):
            answers.append(response.error_message.split(" - ")[0] if response.error_message else _words(response)[0])
        return answers

    async def run() -> list[list[bytes]]:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            return await asyncio.gather(*(one(stub, i) for i in range(100)))

    started = time.monotonic()
    results = asyncio.run(run())
    assert time.monotonic() - started < 60
    for index, answers in enumerate(results):
        # The in-stream error may overtake the outputs (they come from a worker thread); outputs keep their order.
        assert answers.count("Subsequent request with incorrect servable name") == 1
        outputs = [answer for answer in answers if isinstance(answer, bytes)]
        assert outputs == [f"STREAM {index} MESSAGE {n}".encode() for n in range(3)]
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    assert threads < 60  # streams cost tasks, not threads
