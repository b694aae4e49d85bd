"""ModelStreamInfer on models and pipelines, as Triton serves it: one response per request, in the requests' order,
with its id; a bad request is answered in-stream and the stream goes on; requests of one stream run concurrently.
Graph streams keep their own behaviour (tests/e2e/test_streaming.py)."""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.c_libraries import build_library
from ..support.server_process import serve_config
from .test_pipelines import CHAIN, _custom, _pipeline

X = np.arange(10, dtype=np.float32).reshape(1, 10)
PARTIES = 3
"""Executions of the `rendezvous` pipeline that must be inside its node at once for any of them to succeed."""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_streams")
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    models.build_add_constant(root / "add_one" / "1" / "model.xml", [1, 10], 1.0)
    library = build_library("faulty", root)
    rendezvous = _pipeline(
        "rendezvous",
        ["in"],
        [_custom("f", "faulty", {"in": ("request", "in")}, {"out": "result"}, mode="rendezvous", parties=str(PARTIES))],
        {"out": ("f", "result")},
    )
    config = {
        "custom_node_library_config_list": [{"name": "faulty", "base_path": str(library)}],
        "model_config_list": [
            {"config": {"name": "dummy", "base_path": "dummy"}},
            {"config": {"name": "add_one", "base_path": "add_one"}},
        ],
        "pipeline_config_list": [CHAIN, rendezvous],
    }
    process = serve_config(root, config)
    yield process
    process.stop()


def _request(
    model: str, x: np.ndarray, request_id: str, input_name: str | None = None
) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    name = input_name or ("b" if model == "dummy" else "in")
    request.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


def _output(response: service_pb2.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], np.float32).reshape(1, 10)


def test_tritonclient_stream_answers_every_request_in_order_with_its_id(server):
    """A model and a pipeline on one stream (tritonclient's start_stream/async_stream_infer): each request's values,
    id and model, in the order sent."""
    client = grpcclient.InferenceServerClient(server.address)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for index in range(60):
            model, name = ("dummy", "b") if index % 2 == 0 else ("chain", "in")
            tensor = grpcclient.InferInput(name, [1, 10], "FP32")
            tensor.set_data_from_numpy(X + index)
            client.async_stream_infer(model, [tensor], request_id=f"request-{index}")
        received = [answers.get(timeout=60) for _ in range(60)]
    finally:
        client.stop_stream()
    for index, (result, error) in enumerate(received):
        assert error is None, error
        response = result.get_response()
        assert response.id == f"request-{index}"
        if index % 2 == 0:
            assert (response.model_name, response.model_version) == ("dummy", "1")
            np.testing.assert_array_equal(result.as_numpy("a"), X + index + 1)
        else:
            assert response.model_name == "chain"
            np.testing.assert_array_equal(result.as_numpy("out"), X + index + 2)


def _unary_error(server, request: service_pb2.ModelInferRequest) -> str:
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=30)
    return info.value.details()


def test_a_bad_request_is_answered_in_stream_with_its_id_and_the_stream_goes_on(server):
    """Each error is the message ModelInfer gives for the same request, with the request's id (as Triton sends it)."""
    bad = {
        "unknown": _request("nope", X, "unknown"),
        "wrong input": _request("dummy", X, "wrong input", input_name="x"),
        "wrong shape": _request("dummy", np.ones((1, 3), np.float32), "wrong shape"),
        "pipeline input": _request("chain", X, "pipeline input", input_name="b"),
    }
    expected = {key: _unary_error(server, request) for key, request in bad.items()}
    assert expected["unknown"] == "Model with requested name is not found - name: nope"
    assert expected["wrong shape"].startswith("Invalid input shape - ")
    sent = [_request("dummy", X, "first")]
    for key, request in bad.items():
        sent += [request, _request("dummy", X + len(sent) + 1, f"after {key}")]
    responses = list(server.stub.ModelStreamInfer(iter(sent), timeout=60))
    assert len(responses) == len(sent)
    for position, (request, response) in enumerate(zip(sent, responses, strict=True)):
        assert response.infer_response.id == request.id
        if request.id in expected:
            assert response.error_message == expected[request.id]
            assert not response.infer_response.outputs
        else:
            assert response.error_message == ""
            np.testing.assert_array_equal(_output(response.infer_response), X + position + 1)


def test_a_message_that_does_not_parse_is_answered_in_stream(server):
    """Bytes that are not a ModelInferRequest, between good requests: an in-stream error without an id."""
    good = [_request("dummy", X, name).SerializeToString() for name in ("a", "c")]
    with grpc.insecure_channel(server.address) as channel:  # raw bytes: a stub would serialize the requests itself
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
        )
        responses = list(call(iter([good[0], b"\xff\xff\xff", good[1]]), timeout=30))
    assert [r.infer_response.id for r in responses] == ["a", "", "c"]
    assert responses[1].error_message == (
        "Request could not be parsed - ModelInferRequest: Error parsing message with type "
        "'inference.ModelInferRequest': Wire format was corrupt"
    )
    assert responses[0].error_message == responses[2].error_message == ""


def test_requests_of_one_stream_run_concurrently_and_their_answers_keep_the_order(server):
    """Every `rendezvous` execution waits until three are inside its node at once: they succeed only if the stream
    runs them concurrently. The dummy requests between them finish first, yet are answered in their place."""
    sent = []
    for index in range(PARTIES):
        sent.append(_request("rendezvous", X + index, f"rendezvous-{index}"))
        sent.append(_request("dummy", X + index, f"dummy-{index}"))
    responses = list(server.stub.ModelStreamInfer(iter(sent), timeout=120))
    assert [r.infer_response.id for r in responses] == [r.id for r in sent]
    for index in range(PARTIES):
        rendezvous, dummy = responses[2 * index], responses[2 * index + 1]
        assert rendezvous.error_message == "", rendezvous.error_message
        np.testing.assert_array_equal(_output(rendezvous.infer_response), X + index)
        np.testing.assert_array_equal(_output(dummy.infer_response), X + index + 1)


def test_a_half_closed_stream_is_answered_to_the_end(server):
    """The client sends everything and closes its side at once: every answer still comes, then OK."""
    call = server.stub.ModelStreamInfer(iter([_request("dummy", X + i, str(i)) for i in range(200)]), timeout=60)
    assert [r.infer_response.id for r in call] == [str(i) for i in range(200)]
    assert call.code() == grpc.StatusCode.OK


def test_stream_requests_count_in_the_statistics(server):
    def successes() -> int:
        statistics = server.stub.ModelStatistics(service_pb2.ModelStatisticsRequest(name="add_one"), timeout=10)
        return statistics.model_stats[0].inference_stats.success.count

    before = successes()
    requests = [_request("add_one", X, str(i), input_name="x") for i in range(7)]
    assert all(r.error_message == "" for r in server.stub.ModelStreamInfer(iter(requests), timeout=30))
    assert successes() == before + 7


def test_a_stream_whose_first_request_names_nothing_served_ends_with_not_found(server):
    """As OVMS answers a stream on an unknown name (it serves graphs only there)."""
    with pytest.raises(grpc.RpcError) as info:
        list(server.stub.ModelStreamInfer(iter([_request("nope", X, "1")]), timeout=10))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert (
        info.value.details()
        == "Mediapipe graph definition with requested name is not found - name: nope is no servable"
    )
