"""The `pyovms` command: OVMS's startup validation, config.json failures, the demo and shutdown."""

from __future__ import annotations

import json
import os
import signal
from importlib.metadata import version as package_version

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from . import models
from .server_process import ServerProcess, free_port, run_cli

EX_USAGE = 64


def test_version_and_help():
    result = run_cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"pyovms {package_version('pyovms')}")
    result = run_cli("--help")
    assert result.returncode == 0 and "--config_path" in result.stdout and "--grpc_bind_address" in result.stdout


MODEL = ["--model_name", "m", "--model_path", "/tmp/m"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config_path", "c.json", *MODEL, "--port", "9"], "Use either config_path or model_path with model_name"),
        (["--port", "9"], "Use config_path or model_path with model_name"),
        (["--model_name", "m", "--port", "9"], "Use config_path or model_path with model_name"),
        (["--config_path", "c.json", "--port", "9", "--nireq", "2"], "Model parameters in CLI are exclusive with the config file"),
        (["--config_path", "c.json", "--port", "9", "--shape", "(1,2)"], "Model parameters in CLI are exclusive with the config file"),
        ([*MODEL, "--port", "9", "--grpc_workers", "0"], f"grpc_workers count should be from 1 to CPU core count : {os.cpu_count()}"),
        ([*MODEL, "--port", "9", "--grpc_workers", "999"], f"grpc_workers count should be from 1 to CPU core count : {os.cpu_count()}"),
        ([*MODEL, "--port", "9", "--metrics_enable"], "rest_port setting is missing, metrics are enabled on rest port"),
        ([*MODEL, "--port", "9", "--metrics_list", "ovms_requests_success"], "metrics_enable setting is missing, required when metrics_list is provided"),
        (MODEL, "port and rest_port cannot both be unset"),
        ([*MODEL, "--port", "9", "--rest_port", "10", "--rest_workers", "1"], "rest_workers count should be from 2 to 10000"),
        ([*MODEL, "--port", "9", "--rest_workers", "4"], "rest_workers is set but rest_port is not set. rest_port is required to start rest servers"),
        ([*MODEL, "--port", "70000"], "port number out of range from 0 to 65535"),
        ([*MODEL, "--port", "9", "--rest_port", "70000"], "rest_port number out of range from 0 to 65535"),
        ([*MODEL, "--port", "9", "--grpc_bind_address", "not an address"], "grpc_bind_address has invalid format: proper hostname or IP address expected."),
        ([*MODEL, "--port", "9", "--rest_bind_address", "1.2.3.4,bad host"], "rest_bind_address has invalid format: proper hostname or IP address expected."),
        ([*MODEL, "--port", "9", "--rest_port", "9"], "port and rest_port cannot have the same values"),
        ([*MODEL, "--port", "9", "--cpu_extension", "/no/such.so"], "File path provided as an --cpu_extension parameter does not exist in the filesystem: /no/such.so"),
        ([*MODEL, "--port", "9", "--log_level", "VERBOSE"], "log_level should be one of: TRACE, DEBUG, INFO, WARNING, ERROR"),
        ([*MODEL, "--port", "9", "--max_sequence_number", "3"], "Setting low_latency_transformation, max_sequence_number and idle_sequence_cleanup require setting stateful flag for the model."),
        ([*MODEL, "--port", "9", "--plugin_config", "{bad"], "plugin_config is not valid JSON"),
        ([*MODEL, "--port", "9", "--model_version_policy", "[1]"], "model_version_policy must be a JSON object"),
        ([*MODEL, "--port", "9", "--grpc_channel_arguments", "novalue"], "grpc_channel_arguments: grpc channel argument must be key=value: novalue"),
    ],
)  # fmt: skip
def test_startup_validation_exits_64(args, message):
    result = run_cli(*args)
    assert result.returncode == EX_USAGE, result.stderr
    assert result.stderr.strip().startswith(message)


def _config(tmp_path, document) -> str:
    path = tmp_path / "config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


@pytest.mark.parametrize(
    ("document", "logged"),
    [
        ("{not json", "The file is not valid json"),
        ({"model_config_list": [], "extra": 1}, "JSON schema parse error:#/additionalProperties. Keyword:additionalProperties"),
        ({"model_config_list": [{"config": {"name": "m", "bogus": 1}}]}, "Keyword:additionalProperties Key: #/model_config_list/0/config"),
        ({"model_config_list": [{"config": {"base_path": "x"}}]}, "Keyword:required Key: #/model_config_list/0/config"),
        ({"model_config_list": [{"config": {"name": "m", "model_version_policy": {"newest": {}}}}]}, "JSON schema parse error"),
        ({"model_config_list": [{"config": {"name": "m", "nireq": -1}}]}, "Keyword:minimum Key: #/model_config_list/0/config/nireq"),
        ({"pipeline_config_list": []}, "Keyword:required Key: #/"),
    ],
)  # fmt: skip
def test_bad_config_stops_the_server(tmp_path, document, logged):
    result = run_cli("--config_path", _config(tmp_path, document), "--port", str(free_port()))
    assert result.returncode == 1
    assert "Couldn't start model manager" in result.stderr and logged in result.stderr


def test_missing_config_file_stops_the_server(tmp_path):
    result = run_cli("--config_path", str(tmp_path / "nope.json"), "--port", str(free_port()))
    assert result.returncode == 1
    assert "Couldn't start model manager: File not found or cannot open" in result.stderr


def test_later_config_sections_are_accepted(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    document = {
        "model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}],
        "pipeline_config_list": [],
        "custom_node_library_config_list": [],
        "mediapipe_config_list": [],
        "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_requests_success"]}},
    }
    process = ServerProcess(["--config_path", _config(tmp_path, document)], tmp_path / "log")
    try:
        client = grpcclient.InferenceServerClient(process.address)
        assert client.is_model_ready("dummy")
        client.close()
        assert "config section monitoring is accepted but not served yet" in process.log()
    finally:
        assert process.stop() == 0


def test_port_in_use_stops_the_server(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(["--model_name", "dummy", "--model_path", str(tmp_path / "dummy")], tmp_path / "log")
    try:
        result = run_cli(
            "--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--port", str(process.port),
            "--grpc_bind_address", "127.0.0.1",
        )  # fmt: skip
        assert result.returncode == 1 and "Failed to start gRPC server" in result.stderr
    finally:
        process.stop()


def test_demo_serves_its_models(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    process = ServerProcess(["--demo"], tmp_path / "log")
    try:
        client = grpcclient.InferenceServerClient(process.address)
        b = grpcclient.InferInput("b", [1, 10], "FP32")
        b.set_data_from_numpy(np.zeros((1, 10), np.float32))
        np.testing.assert_array_equal(client.infer("dummy", [b]).as_numpy("a"), np.ones((1, 10), np.float32))
        image = grpcclient.InferInput("0", [1, 224, 224, 3], "FP32")
        image.set_data_from_numpy(np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32))
        scores = client.infer("resnet", [image]).as_numpy("1463")
        assert scores.shape == (1, 1000) and abs(float(scores.sum()) - 1.0) < 1e-4
        client.close()
        assert (tmp_path / "cache" / "pyovms" / "demo" / "config.json").is_file()
    finally:
        process.stop()


def test_sigterm_stops_cleanly(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(["--model_name", "dummy", "--model_path", str(tmp_path / "dummy")], tmp_path / "log")
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(15) == 0
    log = process.log()
    assert "Shutting down" in log
    assert 'Version 1 of model dummy status change. New status: ( "state": "END", "error_code": "OK" )' in log
    process.stop()


@pytest.mark.parametrize(
    "limit",
    [
        ["--grpc_max_message_size", "100000"],
        ["--grpc_channel_arguments", "grpc.max_receive_message_length=100000,grpc.http2.max_pings_without_data=0"],
    ],
    ids=["flag", "channel-arguments"],
)
def test_message_size_limit_is_configurable(tmp_path, limit):
    models.build_relu(tmp_path / "dyn" / "1" / "model.xml", [-1, -1])
    process = ServerProcess(["--model_name", "dyn", "--model_path", str(tmp_path / "dyn"), *limit], tmp_path / "log")
    try:
        client = grpcclient.InferenceServerClient(process.address)
        small = grpcclient.InferInput("x", [1, 1000], "FP32")
        small.set_data_from_numpy(np.ones((1, 1000), np.float32))
        assert client.infer("dyn", [small]).as_numpy("y").shape == (1, 1000)
        large = grpcclient.InferInput("x", [1, 100000], "FP32")
        large.set_data_from_numpy(np.ones((1, 100000), np.float32))
        with pytest.raises(grpcclient.InferenceServerException) as info:
            client.infer("dyn", [large])
        assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        client.close()
    finally:
        process.stop()
