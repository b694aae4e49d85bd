"""Graphs from graph.pbtxt (spec §6): unary ModelInfer over gRPC and REST, Python nodes, OpenVINO nodes, side
packets, timestamps, metadata and readiness, and the errors of each, on a real server."""

from __future__ import annotations

import json
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from ..support import graph_repository, models
from ..support.server_process import ServerProcess, serve_config


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphs")
    metrics = "ovms_requests_success,ovms_current_graphs,ovms_requests_accepted,ovms_requests_rejected,ovms_responses"
    process = serve_config(
        root, graph_repository.build(root), "--metrics_enable", "--metrics_list", metrics + ",ovms_graph_error"
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def rest(server):
    return httpclient.InferenceServerClient(server.rest_address)


def _text(name: str, texts: list[bytes]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object))
    return tensor


def _fp32(name: str, array: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


# ------------------------------------------------------------------------------------------------ unary inference


def test_python_node_upper_cases_text(client):
    result = client.infer("upper", [_text("text", [b"hello", b"graph world"])])
    assert result.as_numpy("result").tolist() == [b"HELLO", b"GRAPH WORLD"]
    response = result.get_response()
    assert response.model_name == "upper"
    assert response.model_version == "1"
    assert [o.datatype for o in response.outputs] == ["BYTES"]
    assert list(response.outputs[0].shape) == [2]


def test_python_node_over_rest(rest):
    tensor = httpclient.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"rest call"], dtype=object), binary_data=False)
    result = rest.infer("upper", [tensor])
    assert result.as_numpy("result").tolist() == [b"REST CALL"]


def test_python_node_feeds_openvino_model(client):
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    result = client.infer("double_then_dummy", [_fp32("x", x)])
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2 + 1)


def test_inference_calculator_on_ovtensor_streams(client):
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(1, 10)
    np.testing.assert_array_equal(client.infer("dummy_graph", [_fp32("in", x)]).as_numpy("out"), x + 1)


def test_converter_towards_python_names_the_output_tensor(client):
    x = np.full((1, 10), 2, dtype=np.float32)
    result = client.infer("dummy_to_python", [_fp32("in", x)])
    output = result.get_response().outputs[0]
    assert (output.name, output.datatype, list(output.shape)) == ("scores", "FP32", [1, 10])
    np.testing.assert_array_equal(result.as_numpy("scores"), x + 1)


def test_session_on_a_model_not_served_fails_the_precondition(client):
    assert client.is_model_ready("ghost_session")
    error = _error(lambda: client.infer("ghost_session", [_fp32("in", np.ones((1, 10), np.float32))]))
    assert error.status() == "StatusCode.FAILED_PRECONDITION"
    assert error.message() == (
        "Mediapipe graph precondition failed - node OpenVINOModelServerSessionCalculator: Model with requested name "
        "is not found - name: ghost"
    )


def test_ovtensor_input_in_typed_contents(server):
    request = service_pb2.ModelInferRequest(model_name="dummy_graph")
    tensor = request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
    tensor.contents.fp32_contents.extend(range(10))
    response = server.stub.ModelInfer(request, timeout=10)
    out = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
    np.testing.assert_array_equal(out, np.arange(10, dtype=np.float32) + 1)


def test_subconfig_model_is_served_directly(client):
    x = np.ones((1, 10), dtype=np.float32)
    np.testing.assert_array_equal(client.infer("dummy", [_fp32("b", x)]).as_numpy("a"), x + 1)


def test_inputs_reach_python_in_tag_order(client):
    a = np.array([5, 7], dtype=np.int64)
    b = np.array([1, 2], dtype=np.int64)
    ta, tb = grpcclient.InferInput("a", [2], "INT64"), grpcclient.InferInput("b", [2], "INT64")
    ta.set_data_from_numpy(a)
    tb.set_data_from_numpy(b)
    result = client.infer("pair", [tb, ta])
    assert result.get_response().outputs[0].datatype == "INT64"
    assert result.as_numpy("c").tolist() == [4, 5]


def test_request_response_pass_through(client):
    result = client.infer("echo", [_fp32("anything", np.full((2, 2), 3, np.float32))])
    np.testing.assert_array_equal(result.as_numpy("anything"), np.full((2, 2), 3, np.float32))


def test_generative_graph_called_unary_answers_its_first_yield(client):
    result = client.infer("words", [_text("text", [b"first second third"])])
    assert result.as_numpy("word").tolist() == [b"first"]


def test_requested_outputs_are_honoured(client):
    outputs = [grpcclient.InferRequestedOutput("length")]
    result = client.infer("moody", [_text("text", [b"abc"])], outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["length"]
    assert result.as_numpy("length").tolist() == [b"3"]


# ------------------------------------------------------------------------------------------------ timestamps and side packets


def test_timestamp_parameter_is_used_and_returned(client):
    result = client.infer("upper", [_text("text", [b"t"])], parameters={"OVMS_MP_TIMESTAMP": 1234})
    assert result.get_response().parameters["OVMS_MP_TIMESTAMP"].int64_param == 1234


def test_automatic_timestamp_is_wall_clock_microseconds(client):
    before = time.time_ns() // 1000
    result = client.infer("upper", [_text("text", [b"t"])])
    after = time.time_ns() // 1000
    assert before <= result.get_response().parameters["OVMS_MP_TIMESTAMP"].int64_param <= after


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "Malformed packet timestamp - Invalid timestamp format in request parameter OVMS_MP_TIMESTAMP. "
         "Should be int64"),
        (2**63 - 1, f"Malformed packet timestamp - {2**63 - 1}"),
    ],
)  # fmt: skip
def test_invalid_timestamp(client, value, message):
    error = _error(lambda: client.infer("upper", [_text("text", [b"t"])], parameters={"OVMS_MP_TIMESTAMP": value}))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == message


def test_request_parameter_becomes_side_packet(client):
    tick = grpcclient.InferInput("tick", [1], "INT32")
    tick.set_data_from_numpy(np.array([0], dtype=np.int32))
    result = client.infer("greeting", [tick], parameters={"greeting": "hello side packet"})
    assert result.as_numpy("greeting_out").tolist() == [b"hello side packet"]


def test_missing_side_packet(client):
    tick = grpcclient.InferInput("tick", [1], "INT32")
    tick.set_data_from_numpy(np.array([0], dtype=np.int32))
    error = _error(lambda: client.infer("greeting", [tick]))
    assert error.status() == "StatusCode.FAILED_PRECONDITION"
    assert error.message() == "Failed to start mediapipe graph - missing input side packet: greeting"


def test_py_side_packet_is_reserved(client):
    error = _error(lambda: client.infer("upper", [_text("text", [b"x"])], parameters={"py": "mine"}))
    assert error.status() == "StatusCode.FAILED_PRECONDITION"
    assert error.message() == (
        "Failed to initialize mediapipe graph - Incoming input side packet: py is special reserved name and "
        "cannot be used"
    )


# ------------------------------------------------------------------------------------------------ request errors


def test_unexpected_input(client):
    error = _error(lambda: client.infer("upper", [_text("text", [b"x"]), _text("other", [b"y"])]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == "Unexpected input - other is unexpected"


def test_missing_input(client):
    error = _error(lambda: client.infer("pair", [_fp32("a", np.ones(2, np.float32))]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == "Invalid number of inputs - Not all input packets created; missing: b"


def test_ovtensor_raw_size_error_names_the_input_once(server):
    request = service_pb2.ModelInferRequest(model_name="dummy_graph")
    request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(b"\0" * 36)
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        info.value.details()
        == "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: in"
    )


def test_bytes_to_ovtensor_input_is_a_precision_error(client):
    error = _error(lambda: client.infer("dummy_graph", [_text("in", [b"x"])]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message().startswith("Invalid input precision - Expected one of: BOOL, FP16, FP32")
    assert error.message().endswith("Actual: BYTES; input name: in")


def test_model_error_inside_graph(client):
    error = _error(lambda: client.infer("dummy_graph", [_fp32("in", np.ones((1, 11), np.float32))]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == (
        "Mediapipe execution failed. MP status - node OpenVINOInferenceCalculator: Invalid input shape - "
        "Expected: (1,10); Actual: (1,11); input name: b"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"boom", "Mediapipe execution failed. MP status - node moody_node: ValueError: boom went the node"),
        (b"exit", "Mediapipe execution failed. MP status - node moody_node: SystemExit: 5"),
        (b"wrong", "Mediapipe execution failed. MP status - node moody_node: execute must return or yield a list "
         "of pyovms.Tensor, got Tensor"),
        (b"half", "Mediapipe execution failed. MP status - Unknown error during mediapipe execution; no packet on "
         "output length"),
    ],
)  # fmt: skip
def test_python_node_failures_answer_and_the_server_goes_on(client, server, text, message):
    error = _error(lambda: client.infer("moody", [_text("text", [text])]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == message
    assert "Traceback" not in error.message()
    assert client.infer("moody", [_text("text", [b"fine"])]).as_numpy("out").tolist() == [b"fine"]


def test_python_exception_traceback_is_logged(client, server):
    _error(lambda: client.infer("moody", [_text("text", [b"boom"])]))
    log = server.log()
    assert "Traceback" in log
    assert "boom went the node" in log


# ------------------------------------------------------------------------------------------------ metadata, readiness, loading


def test_graph_metadata(client):
    metadata = client.get_model_metadata("pair")
    assert metadata.name == "pair"
    assert list(metadata.versions) == ["1"]
    assert metadata.platform == "OpenVINO"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("a", "INVALID", []),
        ("b", "INVALID", []),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("c", "INVALID", [])]


def test_graph_readiness_ignores_the_version(client):
    assert client.is_model_ready("upper")
    assert client.is_model_ready("upper", "7")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("broken", "unknown calculator NoSuchCalculator"),
        ("bad_init", "bad_init.py: RuntimeError: cannot initialize"),
    ],
)
def test_graph_that_fails_to_load_is_not_ready_and_answers_unavailable(client, name, reason):
    assert not client.is_model_ready(name)
    error = _error(lambda: client.infer(name, [_fp32("x", np.ones(1, np.float32))]))
    assert error.status() == "StatusCode.UNAVAILABLE"
    assert error.message().startswith(f"Mediapipe is not loaded yet - name: {name};")
    assert reason in error.message()


def _metrics(server: ServerProcess) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://{server.rest_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def test_graph_requests_are_counted_in_metrics(client, server):
    def count(metric: str, name: str, method: str = "Unary") -> float:
        labels = f'api="KServe",interface="gRPC",method="{method}",name="{name}"'
        return _metrics(server).get(f"{metric}{{{labels}}}", -1)

    success = 'ovms_requests_success{api="KServe",interface="gRPC",method="ModelInfer",name="upper",version="1"}'
    before = _metrics(server)
    unary = (count("ovms_requests_accepted", "upper"), count("ovms_requests_rejected", "upper"))
    stream = [count(m, "upper", "Stream") for m in GRAPH_COUNTERS]
    errors = _metrics(server)['ovms_graph_error{name="moody"}']
    client.infer("upper", [_text("text", [b"counted"])])
    _error(lambda: client.infer("upper", [_text("wrong", [b"x"])]))
    _error(lambda: client.infer("moody", [_text("text", [b"boom"])]))
    request = service_pb2.ModelInferRequest(model_name="upper")
    request.inputs.add(name="text", datatype="UINT8", shape=[2])
    request.raw_input_contents.append(b"ok")
    bad = service_pb2.ModelInferRequest(model_name="upper")
    bad.inputs.add(name="nope", datatype="UINT8", shape=[1])
    bad.raw_input_contents.append(b"x")
    assert len(list(server.stub.ModelStreamInfer(iter([request, bad, request]), timeout=10))) == 3
    after = _metrics(server)
    assert after[success] == before[success] + 1
    assert (count("ovms_requests_accepted", "upper"), count("ovms_requests_rejected", "upper")) == (
        unary[0] + 1,
        unary[1] + 1,
    )
    assert [count(m, "upper", "Stream") for m in GRAPH_COUNTERS] == [stream[0] + 2, stream[1] + 1, stream[2] + 2]
    assert after['ovms_graph_error{name="moody"}'] == errors + 1
    assert after['ovms_current_graphs{name="upper"}'] == 0


GRAPH_COUNTERS = ("ovms_requests_accepted", "ovms_requests_rejected", "ovms_responses")


def test_config_status_lists_graphs(rest):
    import urllib.request

    with urllib.request.urlopen(f"http://{rest._parsed_url.netloc}/v1/config", timeout=10) as response:
        status = json.loads(response.read())
    assert status["upper"]["model_version_status"][0]["state"] == "AVAILABLE"
    assert status["broken"]["model_version_status"][0]["state"] == "LOADING"


def test_single_graph_mode(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "graph.pbtxt").write_text(graph_repository.GRAPHS["upper"])
    (tmp_path / "g" / "upper.py").write_text(graph_repository.HANDLERS["upper.py"])
    server = ServerProcess(["--model_name", "shout", "--model_path", str(tmp_path / "g")], tmp_path / "log")
    try:
        result = grpcclient.InferenceServerClient(server.address).infer("shout", [_text("text", [b"quiet"])])
        assert result.as_numpy("result").tolist() == [b"QUIET"]
    finally:
        server.stop()


def test_graph_name_taken_by_a_model(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "graph.pbtxt").write_text(graph_repository.GRAPHS["dummy_graph"])
    config = {
        "model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}],
        "mediapipe_config_list": [{"name": "dummy", "base_path": "g"}],
    }
    server = serve_config(tmp_path, config)
    try:
        client = grpcclient.InferenceServerClient(server.address)
        x = np.zeros((1, 10), np.float32)
        np.testing.assert_array_equal(client.infer("dummy", [_fp32("b", x)]).as_numpy("a"), x + 1)
        assert "Given mediapipe graph name is already occupied" in server.log()
    finally:
        server.stop()


def test_graph_queue_refuses_side_packets(client):
    a = grpcclient.InferInput("a", [1], "INT64")
    a.set_data_from_numpy(np.array([1], dtype=np.int64))
    b = grpcclient.InferInput("b", [1], "INT64")
    b.set_data_from_numpy(np.array([1], dtype=np.int64))
    assert client.infer("pair", [a, b], parameters={"OVMS_MP_TIMESTAMP": 5}).as_numpy("c").tolist() == [0]
    error = _error(lambda: client.infer("pair", [a, b], parameters={"label": "x"}))
    assert error.status() == "StatusCode.FAILED_PRECONDITION"
    assert error.message() == (
        "Failed to initialize mediapipe graph - this graph uses a graph queue (OVMS_GRAPH_QUEUE_MAX_SIZE): request "
        "parameters other than OVMS_MP_TIMESTAMP are not accepted; got label"
    )


def test_reload_rebuilds_changed_graphs_and_finalizes_removed_ones(tmp_path):
    graph_dir = tmp_path / "counted"
    graph_dir.mkdir()
    (graph_dir / "graph.pbtxt").write_text(graph_repository.GRAPHS["counted"])
    (graph_dir / "counted.py").write_text(graph_repository.HANDLERS["counted.py"])
    config = {"model_config_list": [], "mediapipe_config_list": [{"name": "counted"}]}
    server = serve_config(tmp_path, config, "--file_system_poll_wait_seconds", "0")
    marker = graph_dir / "finalized.txt"
    try:
        client = grpcclient.InferenceServerClient(server.address)

        def call() -> bytes:
            x = grpcclient.InferInput("x", [1], "UINT8")
            x.set_data_from_numpy(np.frombuffer(b"x", dtype=np.uint8))
            return client.infer("counted", [x]).as_numpy("y").tobytes()

        assert call() == b"x-v1"
        assert server.reload_config() == 200  # nothing changed
        (graph_dir / "counted.py").write_text(graph_repository.HANDLERS["counted.py"].replace("-v1", "-v2"))
        (graph_dir / "graph.pbtxt").write_text("# edited\n" + graph_repository.GRAPHS["counted"])
        assert server.reload_config() == 201
        assert call() == b"x-v2"
        assert marker.read_text() == "-v1\n"
        (tmp_path / "config.json").write_text(json.dumps({"model_config_list": []}))
        assert server.reload_config() == 201
        error = _error(call)
        assert error.status() == "StatusCode.NOT_FOUND"
        assert error.message() == "Mediapipe is retired - name: counted"
        assert marker.read_text() == "-v1\n-v2\n"
        (tmp_path / "config.json").write_text(json.dumps(config))
        assert server.reload_config() == 201
        assert call() == b"x-v2"
    finally:
        server.stop()
