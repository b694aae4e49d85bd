"""Load and faults on a real server: a bounded infer-request queue, client deadlines and cancellations that free
their infer requests, a model directory deleted while serving, and every request answered exactly once across a
reload and a shutdown."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from pyovms.scheduling import user_code

from ..support import graph_repository, models
from ..support.server_process import ServerProcess, serve_config, wait_for

SLOW_ROWS = 512


def _request(model: str, name: str, array: np.ndarray) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
    request.raw_input_contents.append(array.tobytes())
    return request


def _floats(response: service_pb2.ModelInferResponse) -> list[float]:
    return np.frombuffer(response.raw_output_contents[0], np.float32).tolist()


def _slow(rows: int = SLOW_ROWS) -> service_pb2.ModelInferRequest:
    return _request("slow", "x", np.ones((rows, 1024), dtype=np.float32))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    models.build_slow_to_infer(root / "slow" / "1" / "model.xml")
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    config = {
        "model_config_list": [
            {"config": {"name": "slow", "base_path": "slow", "nireq": 1}},
            {"config": {"name": "dummy", "base_path": "dummy"}},
        ]
    }
    process = serve_config(
        root,
        config,
        "--max_queued_requests", "2",
        "--metrics_enable",
        "--metrics_list", "ovms_infer_req_active,ovms_current_requests",
    )  # fmt: skip
    yield process
    process.stop()


def _wait_idle(server: ServerProcess) -> None:
    """No infer request in use and no request in flight (`ovms_infer_req_queue_size` is nireq, not the waiters)."""
    wait_for(lambda: server.gauge("ovms_infer_req_active") == 0 and server.gauge("ovms_current_requests") == 0)


def test_full_queue_answers_resource_exhausted_and_recovers(server):
    """One infer request, two may wait: with one request running (a long one) and two waiting, seven more are refused
    at once; then all three are served."""
    held = [server.stub.ModelInfer.future(_slow(SLOW_ROWS * 32), timeout=120)]  # a long one runs first
    wait_for(lambda: server.gauge("ovms_infer_req_active") == 1)
    held += [server.stub.ModelInfer.future(_slow(), timeout=120) for _ in range(2)]
    wait_for(lambda: server.gauge("ovms_current_requests") == 3)  # one running, two waiting: the queue is full
    refused = []
    for _ in range(7):
        with pytest.raises(grpc.RpcError) as info:
            server.stub.ModelInfer(_slow(), timeout=60)
        refused.append(info.value.code())
        assert info.value.details().startswith(
            "Too many requests are waiting for an infer request - 2 requests wait for one of 1 infer requests"
        )
    assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 7
    for future in held:
        assert len(future.result().raw_output_contents) == 1
    _wait_idle(server)
    server.stub.ModelInfer(_slow(8), timeout=60)


def _deadline_well_inside_a_slow_inference(server: ServerProcess) -> float:
    """A tenth of the slow model's fastest inference here (at most 50 ms): machines with matrix units (AMX) run it
    in a few milliseconds, so a fixed deadline would race it."""
    durations = []
    for _ in range(4):
        started = time.monotonic()
        server.stub.ModelInfer(_slow(), timeout=60)
        durations.append(time.monotonic() - started)
    return min(0.05, min(durations[1:]) / 10)


def test_deadlines_and_cancellations_free_their_infer_requests(server):
    """Clients that give up mid-inference or while queued get their status; the pool comes back idle."""
    deadline = _deadline_well_inside_a_slow_inference(server)
    expired = []
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as info:
            server.stub.ModelInfer(_slow(), timeout=deadline)
        expired.append(info.value.code())
    assert expired == [grpc.StatusCode.DEADLINE_EXCEEDED] * 3
    cancelled = [server.stub.ModelInfer.future(_slow(), timeout=60) for _ in range(3)]
    time.sleep(0.05)
    for future in cancelled:
        future.cancel()
    for future in cancelled:
        assert future.cancelled() or future.exception() is not None or future.result() is not None
    _wait_idle(server)
    started = time.monotonic()
    server.stub.ModelInfer(_slow(8), timeout=60)
    assert time.monotonic() - started < 5


def test_bad_input_never_wedges_the_server(server):
    """A burst of malformed requests, each answered with its code, and the next good request is served."""
    bad = []
    for index in range(50):
        request = _request("dummy", "b", np.zeros((1, 10), np.float32))
        if index % 3 == 0:
            request.raw_input_contents[0] = b"\0" * 3
        elif index % 3 == 1:
            request.inputs[0].shape[:] = [1, -(2**62)]
        else:
            request.inputs[0].datatype = "NOT_A_TYPE"
        try:
            server.stub.ModelInfer(request, timeout=10)
        except grpc.RpcError as exc:
            bad.append(exc.code())
    assert bad == [grpc.StatusCode.INVALID_ARGUMENT] * 50
    answer = server.stub.ModelInfer(_request("dummy", "b", np.zeros((1, 10), np.float32)), timeout=10)
    assert _floats(answer) == [1.0] * 10


def test_model_directory_deleted_while_serving(tmp_path):
    """Only that model goes unavailable; the others keep serving."""
    models.build_dummy(tmp_path / "gone" / "1" / "model.xml")
    models.build_dummy(tmp_path / "kept" / "1" / "model.xml")
    config = {
        "model_config_list": [
            {"config": {"name": "gone", "base_path": "gone"}},
            {"config": {"name": "kept", "base_path": "kept"}},
        ]
    }
    server = serve_config(tmp_path, config, "--file_system_poll_wait_seconds", "1")
    try:
        x = np.zeros((1, 10), np.float32)
        server.stub.ModelInfer(_request("gone", "b", x), timeout=10)
        shutil.rmtree(tmp_path / "gone")

        def retired() -> bool:
            try:
                server.stub.ModelInfer(_request("gone", "b", x), timeout=10)
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.NOT_FOUND
            return False

        wait_for(retired, timeout=20)
        answer = server.stub.ModelInfer(_request("kept", "b", x), timeout=10)
        assert _floats(answer) == [1.0] * 10
    finally:
        server.stop()


def test_model_files_corrupted_while_serving(tmp_path):
    """A served version's files overwritten with garbage: it keeps serving (its compiled model is in memory). A new
    version whose files are garbage fails to load, is reported, and the one before keeps serving; other models are
    untouched."""
    models.build_dummy(tmp_path / "m" / "1" / "model.xml")
    models.build_dummy(tmp_path / "kept" / "1" / "model.xml")
    config = {
        "model_config_list": [
            {"config": {"name": "m", "base_path": "m"}},
            {"config": {"name": "kept", "base_path": "kept"}},
        ]
    }
    server = serve_config(tmp_path, config, "--file_system_poll_wait_seconds", "1")
    try:
        x = np.zeros((1, 10), np.float32)

        def served_by(name: str) -> str:
            answer = server.stub.ModelInfer(_request(name, "b", x), timeout=10)
            assert _floats(answer) == [1.0] * 10
            return answer.model_version

        assert served_by("m") == "1"
        for file in (tmp_path / "m" / "1").iterdir():
            file.write_bytes(b"\x00garbage" * 100)
        (tmp_path / "m" / "2").mkdir()
        (tmp_path / "m" / "2" / "model.xml").write_text("<net><layers><layer id='0' type='Nonsense'/></layers></net>")
        (tmp_path / "m" / "2" / "model.bin").write_bytes(b"\xff" * 16)
        wait_for(lambda: "Version 2 of model m status change" in server.log(), timeout=20)
        wait_for(lambda: "Error occurred while loading model: m; version: 2" in server.log(), timeout=20)
        ready = server.stub.ModelReady(service_pb2.ModelReadyRequest(name="m", version="2"), timeout=10)
        assert ready.ready is False
        assert served_by("m") == "1"
        assert served_by("kept") == "1"
    finally:
        server.stop()


def test_every_request_gets_exactly_one_answer_across_reload_and_shutdown(tmp_path):
    """Clients send without pause while a version is added (reload) and then the server is told to stop: each
    request ends exactly once, in success or a status, none hangs; none fails before the shutdown starts."""
    models.build_add_constant(tmp_path / "m" / "1" / "model.xml", [1, 10], 1.0)
    config = {"model_config_list": [{"config": {"name": "m", "base_path": "m"}}]}
    server = serve_config(tmp_path, config, "--file_system_poll_wait_seconds", "1", "--shutdown_grace_seconds", "5")
    outcomes: list[tuple[float, grpc.StatusCode]] = []
    lock = threading.Lock()
    stop_sending = threading.Event()
    x = np.zeros((1, 10), np.float32)

    def client() -> int:
        sent = 0
        channel = grpc.insecure_channel(server.address)
        stub = type(server.stub)(channel)
        while not stop_sending.is_set():
            sent += 1
            try:
                stub.ModelInfer(_request("m", "x", x), timeout=20)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            with lock:
                outcomes.append((time.monotonic(), code))
        channel.close()
        return sent

    def answered() -> int:
        with lock:
            return len(outcomes)

    with ThreadPoolExecutor(4) as pool:
        senders = [pool.submit(client) for _ in range(4)]
        wait_for(lambda: answered() >= 50, timeout=120)
        models.build_add_constant(tmp_path / "m" / "2" / "model.xml", [1, 10], 2.0)
        wait_for(lambda: "Loaded model m; version: 2" in server.log(), timeout=120)  # the reload, under load
        served_before = answered()
        wait_for(lambda: answered() >= served_before + 100, timeout=120)  # and requests after it
        shutdown_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)  # the server has gone: every request from now on is refused
        stop_sending.set()
        sent = sum(f.result(timeout=60) for f in senders)
    assert server.process.returncode == 0
    server.stop()
    print(
        f"{sent} requests sent, {len(outcomes)} answered:",
        {c.name: [o for _, o in outcomes].count(c) for c in {o for _, o in outcomes}},
    )
    assert len(outcomes) == sent  # exactly one answer per request
    before = [code for at, code in outcomes if at < shutdown_at]
    assert len(before) > 100
    assert set(before) == {grpc.StatusCode.OK}
    after = {code for at, code in outcomes if at >= shutdown_at}
    # Served during the grace period (the clients stay connected, so it lasts its 5 s); refused once the server has
    # closed: UNAVAILABLE, or CANCELLED from gRPC for a call that arrived while the server shut down and never reached
    # a handler. Never a hang (DEADLINE_EXCEEDED) or a server fault.
    assert grpc.StatusCode.OK in after
    assert after <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


HANGING_LIBRARY = """
import time

def get_inputs_info(params, state):
    return {"x": ("FP32", [1, 10])}

def get_outputs_info(params, state):
    return {"y": ("FP32", [1, 10])}

def execute(inputs, params, state):
    if inputs["x"][0, 0] > 0:
        time.sleep(float(params["hang_seconds"]))
    return {"y": inputs["x"]}
"""
HANGING_HANDLER = """
import time
from pyovms import Tensor

class OvmsPythonModel:
    def execute(self, inputs):
        if bytes(inputs[0]) == b"hang":
            time.sleep(60)
        return [Tensor("y", bytes(inputs[0]))]
"""
MODELS = {"model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}]}


def _user_code_repository(root: Path, library: str, handler: str, **params: str) -> dict:
    """`dummy`, pipeline `p` (request `in` -> one custom node of `library` -> `out`) and graph `g` (one Python node
    running `handler`, stream `x` -> `y`); returns the config."""
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    (root / "library.py").write_text(library)
    (root / "g").mkdir()
    (root / "g" / "graph.pbtxt").write_text(
        graph_repository.python_graph(
            ["OVMS_PY_TENSOR:x"], ["OVMS_PY_TENSOR:y"], ['input_stream: "INPUT:x"', 'output_stream: "OUTPUT:y"'],
            "handler.py", "node",
        )
    )  # fmt: skip
    (root / "g" / "handler.py").write_text(handler)
    node = {
        "name": "n", "type": "custom", "library_name": "lib", "params": params,
        "inputs": [{"x": {"node_name": "request", "data_item": "in"}}],
        "outputs": [{"data_item": "y", "alias": "y"}],
    }  # fmt: skip
    return {
        **MODELS,
        "custom_node_library_config_list": [{"name": "lib", "base_path": "library.py"}],
        "pipeline_config_list": [
            {"name": "p", "inputs": ["in"], "nodes": [node], "outputs": [{"out": {"node_name": "n", "data_item": "y"}}]}
        ],
        "mediapipe_config_list": [{"name": "g", "base_path": "g"}],
    }


def test_hanging_user_code_honours_deadlines_and_holds_up_nothing_else(tmp_path):
    """A custom node and a Python node that hang, more times than their pools have threads: their callers get
    DEADLINE_EXCEEDED on time; the hung threads are written off and replaced, so the same pipeline and graph, and
    models, keep being served at once; and the hung calls do not hold up the server's exit."""
    config = _user_code_repository(tmp_path, HANGING_LIBRARY, HANGING_HANDLER, hang_seconds="60")
    server = serve_config(tmp_path, config)
    try:
        hang = np.ones((1, 10), np.float32)
        fine = np.zeros((1, 10), np.float32)
        text = service_pb2.ModelInferRequest(model_name="g")
        text.inputs.add(name="x", datatype="UINT8", shape=[4])
        text.raw_input_contents.append(b"hang")
        hung_per_kind = user_code.WORKERS + 2  # more than a pool has threads
        for request in [_request("p", "in", hang)] * hung_per_kind + [text] * hung_per_kind:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                server.stub.ModelInfer(request, timeout=0.5)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 2
        started = time.monotonic()
        out = server.stub.ModelInfer(_request("p", "in", fine), timeout=10)
        assert _floats(out) == [0.0] * 10
        text.raw_input_contents[0] = b"fine"
        assert server.stub.ModelInfer(text, timeout=10).raw_output_contents[0] == b"fine"
        out = server.stub.ModelInfer(_request("dummy", "b", fine), timeout=10)
        assert _floats(out) == [1.0] * 10
        assert time.monotonic() - started < 3  # none of these waited for the hanging calls
        log = server.log()
        assert log.count("its thread is written off and replaced") == 2 * hung_per_kind
        assert "custom_node call execute of node n (lib) still running" in log
        assert "python_node call PythonExecutorCalculator._call still running" in log
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 5  # the hung calls (60 s) do not delay the exit
    finally:
        server.stop()


LEAK_MB = 40  # above glibc's largest mmap threshold (32 MiB): each block is its own mapping, returned when freed
LEAKING_LIBRARY = f"""
import numpy as np

def initialize(params):
    return {{"kept": []}}

def get_inputs_info(params, state):
    return {{"x": ("FP32", [1, 10])}}

def get_outputs_info(params, state):
    return {{"y": ("FP32", [1, 10])}}

def execute(inputs, params, state):
    state["kept"].append(np.ones({LEAK_MB} << 20, np.uint8))
    return {{"y": inputs["x"]}}
"""
LEAKING_HANDLER = f"""
import numpy as np
from pyovms import Tensor

class OvmsPythonModel:
    def initialize(self, kwargs):
        self.kept = []

    def execute(self, inputs):
        self.kept.append(np.ones({LEAK_MB} << 20, np.uint8))
        return [Tensor("y", bytes(inputs[0]))]
"""


def test_leaking_user_code_keeps_the_server_serving_and_unloading_it_frees_the_memory(tmp_path):
    """A custom node and a Python node that keep 40 MiB per call: every call is answered, the growth is the
    server's own RSS (what `process_resident_memory`-style monitoring sees), other servables are unaffected, and
    taking the pipeline and graph out of the config (a reload) runs `deinitialize`/`finalize` and drops what they
    held: the memory goes back."""
    server = serve_config(tmp_path, _user_code_repository(tmp_path, LEAKING_LIBRARY, LEAKING_HANDLER))
    try:
        x = np.arange(10, dtype=np.float32).reshape(1, 10)
        text = service_pb2.ModelInferRequest(model_name="g")
        text.inputs.add(name="x", datatype="UINT8", shape=[4])
        text.raw_input_contents.append(b"leak")
        before = server.rss_mb()
        calls = 5
        for _ in range(calls):
            out = server.stub.ModelInfer(_request("p", "in", x), timeout=30)
            assert _floats(out) == x.ravel().tolist()
            assert server.stub.ModelInfer(text, timeout=30).raw_output_contents[0] == b"leak"
        leaked = server.rss_mb() - before
        assert leaked > 0.9 * 2 * calls * LEAK_MB, f"{leaked:.0f} MB"
        out = server.stub.ModelInfer(_request("dummy", "b", x), timeout=30)
        assert _floats(out) == (x + 1).ravel().tolist()

        (tmp_path / "config.json").write_text(json.dumps(MODELS))
        assert server.reload_config() == 201
        wait_for(lambda: server.rss_mb() - before < 0.1 * leaked, timeout=10)
        for name in ("p", "g"):
            with pytest.raises(grpc.RpcError) as info:
                server.stub.ModelInfer(_request(name, "in", x), timeout=30)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        out = server.stub.ModelInfer(_request("dummy", "b", x), timeout=30)
        assert _floats(out) == (x + 1).ravel().tolist()
    finally:
        server.stop()


HANGING_GENERATOR = """
import time
from pyovms import Tensor

class OvmsPythonModel:
    def execute(self, inputs):
        yield [Tensor("y", b"first")]
        time.sleep(60)
        yield [Tensor("y", b"never")]
"""


def test_a_stream_whose_generator_hangs_is_freed_when_its_client_leaves(tmp_path):
    """A generative Python node hangs between two yields and its client cancels the stream: the graph run ends
    (`ovms_current_graphs` back to 0) even though closing the generator has to wait for the hung step; the hung
    step's thread is written off, and the graph serves new streams."""
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "graph.pbtxt").write_text(graph_repository.generative_graph("x", "y", "gen.py", "generator"))
    (tmp_path / "g" / "gen.py").write_text(HANGING_GENERATOR)
    config = {"model_config_list": [], "mediapipe_config_list": [{"name": "g", "base_path": "g"}]}
    server = serve_config(tmp_path, config, "--metrics_enable")
    try:
        request = service_pb2.ModelInferRequest(model_name="g")
        request.inputs.add(name="x", datatype="UINT8", shape=[2])
        request.raw_input_contents.append(b"go")
        for _ in range(2):  # the second stream is served while the first one's generator still hangs
            release = threading.Event()
            call = server.stub.ModelStreamInfer(itertools.chain([request], iter(release.wait, True)), timeout=60)
            first = next(call)
            assert first.infer_response.raw_output_contents[0] == b"first"
            assert server.gauge("ovms_current_graphs") == 1
            call.cancel()
            release.set()
            wait_for(lambda: server.gauge("ovms_current_graphs") == 0, timeout=15)
        log = server.log()
        assert log.count("python_node call PythonExecutorCalculator._next still running") == 2, log
        assert log.count("its generator did not close within 5 s") == 2
    finally:
        server.stop()
