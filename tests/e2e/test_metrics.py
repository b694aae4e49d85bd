"""Prometheus metrics on /metrics (spec §7.3): OVMS's names, labels and buckets, values after known traffic over
gRPC and REST, the metrics_list choice and its validation, and /metrics when disabled."""

from __future__ import annotations

import http.client
import math

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.server_process import ServerProcess, run_cli, serve_config


def _scrape(server: ServerProcess) -> tuple[int, str, dict]:
    connection = http.client.HTTPConnection(server.rest_address, timeout=30)
    try:
        connection.request("GET", "/metrics?format=ignored")
        response = connection.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        connection.close()


def _value(text: str, metric: str, **labels) -> float:
    """The value of the sample of `metric` whose labels are exactly `labels` (the parser names counter samples
    `*_total`; the text itself keeps OVMS's names, checked separately)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (metric, f"{metric}_total") and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {metric} {labels}")


def _infer(server: ServerProcess, shape: list[int]) -> None:
    request = service_pb2.ModelInferRequest(model_name="dummy")
    request.inputs.add(name="b", datatype="FP32", shape=shape)
    request.raw_input_contents.append(np.zeros(shape, dtype=np.float32).tobytes())
    server.stub.ModelInfer(request, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    config = {
        "model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}],
        "monitoring": {"metrics": {"enable": True}},
    }
    process = serve_config(root, config)
    yield process
    process.stop()


def test_series_exist_from_the_start_with_ovms_names(server):
    status, text, headers = _scrape(server)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE ovms_requests_success counter" in text
    assert "# TYPE ovms_request_time_us histogram" in text
    labels = {"api": "KServe", "interface": "REST", "method": "ModelMetadata", "name": "dummy", "version": "1"}
    assert _value(text, "ovms_requests_fail", **labels) == 0
    ready = {"api": "KServe", "interface": "gRPC", "method": "ModelReady", "name": "dummy"}  # no version label
    assert 'ovms_requests_success{api="KServe",interface="gRPC",method="ModelReady",name="dummy"}' in text
    assert _value(text, "ovms_requests_success", **ready) >= 0
    assert _value(text, "ovms_streams", name="dummy", version="1") >= 1
    buckets = [float(line.split('le="')[1].split('"')[0]) for line in text.splitlines()
               if line.startswith('ovms_inference_time_us_bucket{name="dummy"')]  # fmt: skip
    assert buckets == [math.floor(10 * 1.8**i) for i in range(33)] + [math.inf]


def test_values_after_known_traffic(server):
    before = _scrape(server)[1]
    grpc_infer = {"api": "KServe", "interface": "gRPC", "method": "ModelInfer", "name": "dummy", "version": "1"}
    start_ok = _value(before, "ovms_requests_success", **grpc_infer)
    start_fail = _value(before, "ovms_requests_fail", **grpc_infer)
    start_count = _value(before, "ovms_request_time_us_count", interface="gRPC", name="dummy", version="1")
    start_inference = _value(before, "ovms_inference_time_us_count", name="dummy", version="1")
    for _ in range(5):
        _infer(server, [1, 10])
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            _infer(server, [1, 11])
    server.stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="dummy"), timeout=10)
    after = _scrape(server)[1]
    assert _value(after, "ovms_requests_success", **grpc_infer) == start_ok + 5
    assert _value(after, "ovms_requests_fail", **grpc_infer) == start_fail + 2
    assert _value(after, "ovms_request_time_us_count", interface="gRPC", name="dummy", version="1") == start_count + 5
    assert _value(after, "ovms_inference_time_us_count", name="dummy", version="1") == start_inference + 5
    assert _value(after, "ovms_request_time_us_sum", interface="gRPC", name="dummy", version="1") > 0
    metadata = {**grpc_infer, "method": "ModelMetadata"}
    assert _value(after, "ovms_requests_success", **metadata) >= 1
    assert _value(after, "ovms_current_requests", name="dummy", version="1") == 0


def test_metrics_list_chooses_the_series(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(
        ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--metrics_enable",
         "--metrics_list", "ovms_infer_req_queue_size,ovms_infer_req_active"], tmp_path / "log",
    )  # fmt: skip
    try:
        text = _scrape(process)[1]
        assert _value(text, "ovms_infer_req_queue_size", name="dummy", version="1") >= 1
        assert _value(text, "ovms_infer_req_active", name="dummy", version="1") == 0
        assert "ovms_requests_success" not in text
    finally:
        process.stop()


def test_invalid_metric_names_are_refused(tmp_path):
    result = run_cli("--model_name", "m", "--model_path", str(tmp_path), "--rest_port", "8000", "--port", "9000",
                     "--metrics_enable", "--metrics_list", "ovms_requests_success,no_such_metric")  # fmt: skip
    assert result.returncode == 64
    assert "Invalid name in metrics_list: no_such_metric" in result.stderr


def test_metrics_disabled_is_an_unknown_url(server, tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(["--model_name", "dummy", "--model_path", str(tmp_path / "dummy")], tmp_path / "log")
    try:
        status, text, _ = _scrape(process)
        assert status == 400 and "Invalid request URL" in text
    finally:
        process.stop()
