"""Start-up ordering (OVMS): gRPC answers before models load; Live true, Ready false, then Ready true."""

from __future__ import annotations

import contextlib
import http.client
import json
import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ..support import models
from ..support.in_flight import SLOW_ARGS, InFlight
from ..support.server_process import ServerProcess, wait_for


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    models.build_slow_to_compile(root / "slow" / "1" / "model.xml")
    process = ServerProcess(
        ["--model_name", "slow", "--model_path", str(root / "slow")], root / "log", wait_ready=False
    )
    yield process
    process.stop()


def _wait_live(stub, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=1).live:
                return
        except grpc.RpcError:
            time.sleep(0.05)
    raise AssertionError("server never became live")


def _rest(process: ServerProcess, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(process.rest_address, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_live_before_ready_then_ready(slow_server):
    stub = slow_server.stub
    _wait_live(stub)
    assert stub.ServerReady(service_pb2.ServerReadyRequest()).ready is False
    # REST says the same while the model loads: live, not ready (503), the loading version not ready (404).
    assert _rest(slow_server, "/v2/health/live") == (200, b"")
    assert _rest(slow_server, "/v2/health/ready") == (503, b'{"error":"Server is not ready"}')
    assert _rest(slow_server, "/v2/models/slow/versions/1/ready") == (
        404,
        b'{"error":"Model with requested version is not loaded yet"}',
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelReady(service_pb2.ModelReadyRequest(name="slow"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details().startswith("Model with requested version is not found")

    # An inference naming the loading version explicitly waits for it (up to 10 s) instead of failing.
    request = service_pb2.ModelInferRequest(model_name="slow", model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(np.ones((1, 64), dtype=np.float32).tobytes())
    response = stub.ModelInfer(request, timeout=60)
    assert response.model_version == "1" and list(response.outputs[0].shape) == [1, 64]

    slow_server.wait_ready(60)
    assert stub.ServerReady(service_pb2.ServerReadyRequest()).ready is True
    assert stub.ModelReady(service_pb2.ModelReadyRequest(name="slow")).ready is True
    assert "STATUS CHANGE: Version 1 of model slow status change." in slow_server.log()
    assert _rest(slow_server, "/v2/health/ready") == (200, b"")
    assert _rest(slow_server, "/v2/models/slow/versions/1/ready") == (200, b"")


@pytest.mark.parametrize(("flag", "expected"), [([], "uvloop"), (["--event_loop", "asyncio"], "asyncio")])
def test_event_loop_choice(tmp_path, flag, expected):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), *flag], tmp_path / "log")
    try:
        request = service_pb2.ModelInferRequest(model_name="dummy")
        request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
        request.raw_input_contents.append(np.zeros((1, 10), dtype=np.float32).tobytes())
        response = process.stub.ModelInfer(request, timeout=30)
        np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], dtype=np.float32), np.ones(10))
        assert f"Event loop: {expected}" in process.log()
    finally:
        process.stop()


@pytest.mark.parametrize("grace", ["60", "0"])
def test_sigterm_lets_requests_in_flight_finish_within_the_grace_period(tmp_path, grace):
    """SIGTERM while an inference runs (seen running: `ovms_infer_req_active` is 1): with a grace period it
    finishes and is answered; without one it is cut off. Either way the server exits with 0."""
    import signal

    models.build_slow_to_infer(tmp_path / "slow" / "1" / "model.xml")
    process = ServerProcess(
        ["--model_name", "slow", "--model_path", str(tmp_path / "slow"), "--shutdown_grace_seconds", grace,
         *SLOW_ARGS],
        tmp_path / "log",
    )  # fmt: skip

    try:
        call = InFlight(process)
        call.start_and_see_running()
        process.process.send_signal(signal.SIGTERM)
        if grace == "0":  # no grace: the request in flight is cut off
            assert call.error().code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        else:
            call.answer()
        process.channel.close()  # the last client leaves: the server need not wait for the rest of its grace period
        assert process.process.wait(60) == 0
        log = process.log()
        assert f"Shutting down: not ready; serving until the clients have left, for {float(grace):.1f} s at most" in log
    finally:
        process.stop()


def test_during_the_grace_period_both_ports_answer_new_clients_and_readiness_is_false(tmp_path):
    """After SIGTERM, with a client still connected (so the grace period goes on): a new gRPC connection and a new
    REST connection are served (inference answers, ServerReady and REST ready say not ready, liveness says live)
    instead of being refused; once every client has left, the server exits at once with 0, long before the grace
    period (120 s) ends."""
    import signal
    import urllib.error
    import urllib.request

    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(
        ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--shutdown_grace_seconds", "120"],
        tmp_path / "log",
    )
    request = service_pb2.ModelInferRequest(model_name="dummy")
    request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.ones((1, 10), dtype=np.float32).tobytes())
    try:
        process.stub.ModelInfer(request, timeout=30)  # the harness's channel stays connected
        process.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "Shutting down: not ready" in process.log(), timeout=60)
        with grpc.insecure_channel(process.address) as channel:  # a connection opened after the signal
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            answer = stub.ModelInfer(request, timeout=30)
            np.testing.assert_array_equal(np.frombuffer(answer.raw_output_contents[0], np.float32), np.full(10, 2.0))
            assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready is False
            assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live is True
        rest = f"http://{process.rest_address}"
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{rest}/v2/health/ready", timeout=10)
        assert not_ready.value.code == 503
        with urllib.request.urlopen(f"{rest}/v2/health/live", timeout=10) as live:
            assert live.status == 200
        body = json.dumps({"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]})
        with urllib.request.urlopen(f"{rest}/v2/models/dummy/infer", data=body.encode(), timeout=30) as answer:
            assert json.loads(answer.read())["outputs"][0]["data"] == [2.0] * 10
        assert process.process.poll() is None  # still serving: the harness's channel is connected
        process.channel.close()
        assert process.process.wait(60) == 0
    finally:
        process.stop()


def test_log_path_and_log_level(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    log_file = tmp_path / "pyovms.log"
    process = ServerProcess(
        ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--log_path", str(log_file),
         "--log_level", "INFO"], tmp_path / "console",
    )  # fmt: skip
    try:
        with pytest.raises(grpc.RpcError):
            process.stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"), timeout=10)
    finally:
        process.stop()
    written = log_file.read_text()
    assert 'STATUS CHANGE: Version 1 of model dummy status change. New status: ( "state": "AVAILABLE"' in written
    assert "Server ready" in written
    assert "[DEBUG]" not in written  # below the INFO level: the failed request's line is not written
    assert "Server ready" not in process.log_path.read_text()  # the console gets nothing


def test_a_second_signal_during_the_grace_period_stops_at_once(tmp_path):
    """A request held inside a custom node keeps the grace period (120 s) going; a second SIGTERM ends the process
    at once, with 128 + SIGTERM, saying so."""
    import json
    import signal
    import threading

    from ..support import python_libraries

    (tmp_path / "blocking.py").write_text(python_libraries.BLOCKING)
    node = {"name": "node", "type": "custom", "library_name": "blocking",
            "params": {"started": str(tmp_path / "started"), "release": str(tmp_path / "release")},
            "inputs": [{"x": {"node_name": "request", "data_item": "in"}}], "outputs": [{"data_item": "y", "alias": "y"}]}  # fmt: skip
    config = {
        "model_config_list": [],
        "custom_node_library_config_list": [{"name": "blocking", "base_path": "blocking.py"}],
        "pipeline_config_list": [{"name": "held", "inputs": ["in"], "nodes": [node],
                                  "outputs": [{"out": {"node_name": "node", "data_item": "y"}}]}],
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    process = ServerProcess(
        ["--config_path", str(tmp_path / "config.json"), "--shutdown_grace_seconds", "120"], tmp_path / "log"
    )
    request = service_pb2.ModelInferRequest(model_name="held")
    request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.zeros((1, 10), dtype=np.float32).tobytes())
    worker = threading.Thread(target=lambda: _ignore_errors(lambda: process.stub.ModelInfer(request, timeout=180)))
    try:
        worker.start()
        wait_for(lambda: (tmp_path / "started").exists(), timeout=60)
        process.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "a second SIGINT or SIGTERM stops at once" in process.log(), timeout=60)
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(30) == 128 + signal.SIGTERM
        assert "SIGTERM again during the grace period: stopping at once" in process.log()
    finally:
        (tmp_path / "release").touch()
        process.stop()
        worker.join(60)


def _ignore_errors(call) -> None:
    with contextlib.suppress(grpc.RpcError):  # cut off by the second signal
        call()
