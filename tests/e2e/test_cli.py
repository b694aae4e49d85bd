"""The `pyovms` command: --version/--help, OVMS's start-up validation (exit 64 with OVMS's messages), config.json
problems that stop the server, accepted config sections, the demo repository and SIGTERM (spec §4.2-§4.4)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.server_process import ServerProcess, free_port, run_cli

EX_USAGE = 64
CORES = os.cpu_count() or 1
PORT, REST_PORT = str(free_port()), str(free_port())
SINGLE = ["--model_name", "m", "--model_path", "/nonexistent/model"]
TWICE = ["--grpc_restricted_protocol", "health,inference:b=2"]
CONFIG = ["--config_path", "/nonexistent/config.json"]


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert importlib.metadata.version("pyovms") in result.stdout


def test_help():
    """Every flag says what it does; those with a default show it; those pyovms does not act on say so and why."""
    result = run_cli("--help")
    assert result.returncode == 0
    text = re.sub(r"-\s+", "-", " ".join(result.stdout.split()))  # argparse wraps lines, also after hyphens
    for flag in ("--config_path", "--model_name", "--model_path", "--port", "--rest_port", "--grpc_bind_address"):
        assert flag in text
    from pyovms.cli import NOT_ACTED_ON, build_parser

    assert all(action.help for action in build_parser()._actions), "a flag without help"
    for shown in ("--file_system_poll_wait_seconds FILE_SYSTEM_POLL_WAIT_SECONDS config/version poll period (default: 1)",
                  "(default: 0.0.0.0)", "--storage_timeout_seconds", "(default: 10.0)", "(default: WARNING)"):  # fmt: skip
        assert shown in text, shown
    for name, why in NOT_ACTED_ON.items():
        assert f"accepted for OVMS command lines, no effect: {' '.join(why.split())}" in text, name


# ---------------------------------------------------------------------------------------------- start-up validation

USAGE_ERRORS = {
    "config_and_model_name": (
        [*CONFIG, "--model_name", "m", "--port", PORT],
        "Use either config_path or model_path with model_name",
    ),
    "config_and_model_path": (
        [*CONFIG, "--model_path", "/p", "--port", PORT],
        "Use either config_path or model_path with model_name",
    ),
    "neither_config_nor_model": (["--port", PORT], "Use config_path or model_path with model_name"),
    "model_name_without_path": (["--model_name", "m", "--port", PORT], "Use config_path or model_path"),
    "model_path_without_name": (["--model_path", "/p", "--port", PORT], "Use config_path or model_path"),
    "config_with_batch_size": (
        [*CONFIG, "--port", PORT, "--batch_size", "5"],
        "Model parameters in CLI are exclusive with the config file",
    ),
    "config_with_shape": (
        [*CONFIG, "--port", PORT, "--shape", "(1,2)"],
        "Model parameters in CLI are exclusive with the config file",
    ),
    "config_with_nireq": (
        [*CONFIG, "--port", PORT, "--nireq", "3"],
        "Model parameters in CLI are exclusive with the config file",
    ),
    "config_with_version_policy": (
        [*CONFIG, "--port", PORT, "--model_version_policy", '{"all": {}}'],
        "Model parameters in CLI are exclusive with the config file",
    ),
    "config_with_target_device": (
        [*CONFIG, "--port", PORT, "--target_device", "GPU"],
        "Model parameters in CLI are exclusive with the config file",
    ),
    "config_with_plugin_config": (
        [*CONFIG, "--port", PORT, "--plugin_config", '{"NUM_STREAMS": "1"}'],
        "Model parameters in CLI are exclusive with the config file",
    ),
    "grpc_workers_zero": (
        [*SINGLE, "--port", PORT, "--grpc_workers", "0"],
        f"grpc_workers count should be from 1 to CPU core count : {CORES}",
    ),
    "grpc_workers_above_cores": (
        [*SINGLE, "--port", PORT, "--grpc_workers", str(CORES + 1)],
        f"grpc_workers count should be from 1 to CPU core count : {CORES}",
    ),
    "metrics_enable_without_rest_port": (
        [*SINGLE, "--port", PORT, "--metrics_enable"],
        "rest_port setting is missing, metrics are enabled on rest port",
    ),
    "metrics_list_without_metrics_enable": (
        [*SINGLE, "--port", PORT, "--rest_port", REST_PORT, "--metrics_list", "ovms_requests_success"],
        "metrics_enable setting is missing, required when metrics_list is provided",
    ),
    "both_ports_unset": (SINGLE, "port and rest_port cannot both be unset"),
    "both_ports_zero": ([*SINGLE, "--port", "0", "--rest_port", "0"], "port and rest_port cannot both be unset"),
    "rest_workers_too_few": (
        [*SINGLE, "--port", PORT, "--rest_port", REST_PORT, "--rest_workers", "1"],
        "rest_workers count should be from 2 to 10000",
    ),
    "rest_workers_too_many": (
        [*SINGLE, "--port", PORT, "--rest_port", REST_PORT, "--rest_workers", "10001"],
        "rest_workers count should be from 2 to 10000",
    ),
    "rest_workers_without_rest_port": (
        [*SINGLE, "--port", PORT, "--rest_workers", "60"],
        "rest_workers is set but rest_port is not set. rest_port is required to start rest servers",
    ),
    "port_out_of_range": ([*SINGLE, "--port", "65536"], "port number out of range from 0 to 65535"),
    "rest_port_out_of_range": (
        [*SINGLE, "--port", PORT, "--rest_port", "72817"],
        "rest_port number out of range from 0 to 65535",
    ),
    "grpc_bind_address_garbage": (
        [*SINGLE, "--port", PORT, "--grpc_bind_address", "not an address!"],
        "grpc_bind_address has invalid format: proper hostname or IP address expected.",
    ),
    "grpc_bind_address_short_ipv4": (  # OVMS's own test: all-numeric, so it must be a full IPv4 address
        [*SINGLE, "--port", PORT, "--grpc_bind_address", "192.0.2"],
        "grpc_bind_address has invalid format: proper hostname or IP address expected.",
    ),
    "rest_bind_address_short_ipv4": (
        [*SINGLE, "--port", PORT, "--rest_port", REST_PORT, "--rest_bind_address", "192.0.2"],
        "rest_bind_address has invalid format: proper hostname or IP address expected.",
    ),
    "same_ports": ([*SINGLE, "--port", PORT, "--rest_port", PORT], "port and rest_port cannot have the same values"),
    "missing_cpu_extension": (
        [*SINGLE, "--port", PORT, "--cpu_extension", "/nonexistent/libext.so"],
        "File path provided as an --cpu_extension parameter does not exist in the filesystem: /nonexistent/libext.so",
    ),
    "bad_log_level": (
        [*SINGLE, "--port", PORT, "--log_level", "WRONG"],
        "log_level should be one of: TRACE, DEBUG, INFO, WARNING, ERROR",
    ),
    "low_latency_without_stateful": (
        [*SINGLE, "--port", PORT, "--low_latency_transformation"],
        "require setting stateful flag for the model",
    ),
    "max_sequence_number_without_stateful": (
        [*SINGLE, "--port", PORT, "--max_sequence_number", "325"],
        "require setting stateful flag for the model",
    ),
    "bad_plugin_config_json": ([*SINGLE, "--port", PORT, "--plugin_config", "{NUM_STREAMS: 1"], "plugin_config"),
    "plugin_config_not_object": ([*SINGLE, "--port", PORT, "--plugin_config", "[1, 2]"], "plugin_config"),
    "bad_version_policy_json": (
        [*SINGLE, "--port", PORT, "--model_version_policy", "latest"],
        "model_version_policy",
    ),
    "bad_grpc_channel_arguments": (
        [*SINGLE, "--port", PORT, "--grpc_channel_arguments", "grpc.max_concurrent_streams"],
        "grpc_channel_arguments",
    ),
    "demo_with_config_path": (["--demo", *CONFIG], "--demo"),
    "port_not_a_number": ([*SINGLE, "--port", "abc"], "argument --port: expected a whole number, got 'abc'"),
    "bad_library_log_level": (
        [*SINGLE, "--port", PORT, "--library_log_level", "LOUD"],
        "library_log_level should be one of: TRACE, DEBUG, INFO, WARNING, ERROR",
    ),
    "config_management_refused": (
        [*CONFIG, "--port", PORT, "--add_to_config", "m"],
        "--add_to_config is an OVMS command pyovms does not serve: edit config.json instead",
    ),
    "pull_refused": ([*SINGLE, "--port", PORT, "--pull"], "--pull is an OVMS command pyovms does not serve"),
    "restriction_without_colon": (
        [*SINGLE, "--port", PORT, "--grpc_restricted_protocol", "model-repository"],
        "grpc_restricted_protocol: expected <groups>:<key>=<value>, got 'model-repository'",
    ),
    "restriction_without_value_shows_no_secret": (
        [*SINGLE, "--port", PORT, "--rest_restricted_api", "model-repository=s3cr3t"],
        "rest_restricted_api: expected <groups>:<key>=<value>, got 'model-repository=***'",
    ),
    "restriction_of_an_unknown_group": (
        [*SINGLE, "--port", PORT, "--rest_restricted_api", "inference,admin:k=v"],
        "rest_restricted_api: unknown group 'admin' (known: health, metadata, inference, shared-memory, model-config, "
        "model-repository, statistics, config, logging, trace)",
    ),
    "group_restricted_twice": (
        [*SINGLE, "--port", PORT, "--grpc_restricted_protocol", "inference:a=1", *TWICE],
        "grpc_restricted_protocol: group inference is restricted more than once",
    ),
    "restriction_with_an_empty_value": (
        [*SINGLE, "--port", PORT, "--grpc_restricted_protocol", "inference:k="],
        "grpc_restricted_protocol: the value of k is empty",
    ),
    "restriction_with_a_bad_header_name": (
        [*SINGLE, "--port", PORT, "--grpc_restricted_protocol", "inference:a key=v"],
        "grpc_restricted_protocol: 'a key' is not a valid header name",
    ),
    "restriction_value_file_missing": (
        [*SINGLE, "--port", PORT, "--rest_restricted_api", "inference:k=@/nonexistent/value"],
        "rest_restricted_api: cannot read the value of k from /nonexistent/value",
    ),
    "api_key_file_missing": (
        [*SINGLE, "--port", PORT, "--api_key_file", "/nonexistent/key"],
        "api_key_file: cannot read /nonexistent/key: No such file or directory",
    ),
}


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_startup_validation(args, message):
    try:  # validation exits within a fraction of a second, before anything is loaded
        result = run_cli(*args, timeout=10)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"pyovms accepted the flags and kept running instead of exiting {EX_USAGE}: {exc.stderr!r}")
    assert result.returncode == EX_USAGE, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- config.json problems

MODEL = {"name": "m", "base_path": "/nonexistent/model"}

SCHEMA_ERRORS = {
    "unknown_top_level_key": {"model_config_list": [{"config": MODEL}], "unknown_section": []},
    "unknown_model_key": {"model_config_list": [{"config": {**MODEL, "bogus": 1}}]},
    "unknown_entry_key": {"model_config_list": [{"config": MODEL, "extra": {}}]},
    "missing_name": {"model_config_list": [{"config": {"base_path": "/nonexistent/model"}}]},
    "policy_two_kinds": {
        "model_config_list": [{"config": {**MODEL, "model_version_policy": {"all": {}, "latest": {"num_versions": 1}}}}]
    },
    "policy_unknown_kind": {"model_config_list": [{"config": {**MODEL, "model_version_policy": {"newest": {}}}}]},
    "policy_num_versions_zero": {
        "model_config_list": [{"config": {**MODEL, "model_version_policy": {"latest": {"num_versions": 0}}}}]
    },
    "policy_versions_not_list": {
        "model_config_list": [{"config": {**MODEL, "model_version_policy": {"specific": {"versions": 1}}}}]
    },
    "nireq_negative": {"model_config_list": [{"config": {**MODEL, "nireq": -1}}]},
    "model_config_list_missing": {"pipeline_config_list": []},
    "model_config_list_not_array": {"model_config_list": {"config": MODEL}},
    "monitoring_without_enable": {"model_config_list": [], "monitoring": {"metrics": {"metrics_list": []}}},
}


def _run_with_config(path: Path) -> subprocess.CompletedProcess[str]:
    args = ("--config_path", str(path), "--port", str(free_port()), "--grpc_bind_address", "127.0.0.1")
    try:
        return run_cli(*args, timeout=20)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"pyovms started serving a config it must refuse: {exc.stderr!r}")


@pytest.mark.parametrize("document", SCHEMA_ERRORS.values(), ids=SCHEMA_ERRORS.keys())
def test_config_schema_violation_stops_server(tmp_path, document):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(document))
    result = _run_with_config(config)
    assert result.returncode != 0
    assert "Couldn't start model manager" in result.stderr
    assert "JSON schema parse error" in result.stderr


def test_config_missing_file_stops_server(tmp_path):
    result = _run_with_config(tmp_path / "missing.json")
    assert result.returncode != 0
    assert "Couldn't start model manager" in result.stderr


def test_config_directory_without_config_json_stops_server(tmp_path):
    result = _run_with_config(tmp_path)
    assert result.returncode != 0
    assert "Couldn't start model manager" in result.stderr


@pytest.mark.parametrize("text", ["{not json", "", '{"model_config_list": [}'], ids=["garbage", "empty", "truncated"])
def test_config_invalid_json_stops_server(tmp_path, text):
    config = tmp_path / "config.json"
    config.write_text(text)
    result = _run_with_config(config)
    assert result.returncode != 0
    assert "Couldn't start model manager" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_sections_accepted_by_schema(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    document = {
        "model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}],
        "pipeline_config_list": [
            {
                "name": "pipe",
                "inputs": ["b"],
                "nodes": [
                    {
                        "name": "node",
                        "model_name": "dummy",
                        "type": "DL model",
                        "inputs": [{"b": {"node_name": "request", "data_item": "b"}}],
                        "outputs": [{"data_item": "a", "alias": "out"}],
                    }
                ],
                "outputs": [{"a": {"node_name": "node", "data_item": "out"}}],
            }
        ],
        "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_requests_success"]}},
    }
    (tmp_path / "config.json").write_text(json.dumps(document))
    # Metrics are served on the REST port, so a valid OVMS setup names one.
    args = ["--config_path", str(tmp_path / "config.json"), "--rest_port", str(free_port())]
    process = ServerProcess(args, tmp_path / "server.log")
    try:
        assert process.stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready is True
        assert process.stub.ModelReady(service_pb2.ModelReadyRequest(name="dummy"), timeout=10).ready is True
    finally:
        assert process.stop() == 0


# ---------------------------------------------------------------------------------------------- demo, signals


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    cache = tmp_path_factory.mktemp("xdg_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        process = ServerProcess(["--demo"], cache / "server.log")
    process.cache = cache
    yield process
    process.stop()


def _infer_fp32(stub, model: str, name: str, array: np.ndarray) -> service_pb2.ModelInferResponse:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
    request.raw_input_contents.append(array.tobytes())
    return stub.ModelInfer(request, timeout=30)


def test_demo_builds_repository_in_cache_dir(demo_server):
    config = demo_server.cache / "pyovms" / "demo" / "config.json"
    assert config.is_file()
    names = [entry["config"]["name"] for entry in json.loads(config.read_text())["model_config_list"]]
    assert sorted(names) == ["dummy", "resnet"]


def test_the_demo_is_built_once_per_version_and_renamed_into_place(tmp_path):
    """A second build keeps the first (and an edit to it); a repository of another version is replaced whole, with no
    staging directory left beside it."""
    from pyovms.repository.demo import SAMPLE_IMAGE, VERSION_FILE, build_demo_repository

    root = tmp_path / "demo"
    config = build_demo_repository(root)
    edited = config.read_text() + " "
    config.write_text(edited)
    model_file = root / "dummy" / "1" / "model.xml"
    built = model_file.stat().st_mtime_ns
    assert build_demo_repository(root) == config and config.read_text() == edited
    assert model_file.stat().st_mtime_ns == built
    (root / VERSION_FILE).write_text("0.0.0")
    (root / "stale").write_text("from an older version")
    build_demo_repository(root)
    assert not (root / "stale").exists() and config.read_text() != edited
    assert (root / VERSION_FILE).read_text() == importlib.metadata.version("pyovms")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["demo"]
    (root / SAMPLE_IMAGE).unlink()  # as a repository built before the demo shipped its image, by the same version
    build_demo_repository(root)
    assert (root / SAMPLE_IMAGE).stat().st_size > 1000


def test_the_readmes_demo_client_runs_as_written(tmp_path, monkeypatch, capsys):
    """README's tritonclient example against a demo server whose home is this test's directory (its sample image
    under ~/.cache/pyovms/demo), on this test's port."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python", readme.index("## Talk to the demo")) + len("```python")
    example = readme[start : readme.index("```", start)]
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    server = ServerProcess(["--demo"], tmp_path / "server.log")
    try:
        assert f"(a sample image: {tmp_path}/.cache/pyovms/demo/cat.jpg)" in server.log()
        exec(example.replace("127.0.0.1:9000", server.address), {})  # as written
    finally:
        server.stop()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith('True name: "dummy"')
    assert "[[ 1.  2.  3.  4.  5.  6.  7.  8.  9. 10.]]" in printed
    assert all(0 <= int(line) < 1000 for line in printed[-2:])  # two class indices


def test_demo_dummy(demo_server):
    stub = demo_server.stub
    metadata = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="dummy"), timeout=10)
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("b", "FP32", [1, 10])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("a", "FP32", [1, 10])]
    b = np.arange(10, dtype=np.float32).reshape(1, 10)
    response = _infer_fp32(stub, "dummy", "b", b)
    assert [o.name for o in response.outputs] == ["a"]
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], np.float32).reshape(1, 10), b + 1)


def test_demo_resnet(demo_server):
    stub = demo_server.stub
    metadata = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="resnet"), timeout=10)
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("0", "FP32", [1, 224, 224, 3])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("1463", "FP32", [1, 1000])]
    image = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    response = _infer_fp32(stub, "resnet", "0", image)
    assert [(o.name, list(o.shape)) for o in response.outputs] == [("1463", [1, 1000])]
    probabilities = np.frombuffer(response.raw_output_contents[0], np.float32)
    assert probabilities.shape == (1000,)
    assert abs(float(probabilities.sum()) - 1.0) < 1e-3


def test_sigterm_stops_with_status_zero(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    args = ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy")]
    process = ServerProcess(args, tmp_path / "server.log")
    try:
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(15) == 0
    finally:
        process.stop()
    assert 'Version 1 of model dummy status change. New status: ( "state": "END"' in process.log_path.read_text()


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


def test_openvinos_usage_telemetry_is_off(tmp_path):
    """Importing openvino sends a usage event to Google Analytics (openvino_telemetry); pyovms turns that off in its
    process: a start that imports openvino and stops on a bad config resolves and connects to nothing, as an audit
    hook in the process itself records."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "def hook(event, args):\n"
        "    if event in ('socket.getaddrinfo', 'socket.connect', 'socket.sendto'):\n"
        f"        open({str(tmp_path / 'network.log')!r}, 'a').write(f'{{event}} {{args!r}}\\n')\n"
        "sys.addaudithook(hook)\n"
    )
    (tmp_path / "config.json").write_text('{"model_config_list": [], "unknown_section": []}')
    environment = dict(os.environ, PYTHONPATH=str(tmp_path))
    environment.pop("CI", None)  # openvino_telemetry stays quiet in CI by itself: this is a user's machine
    probe = "import pyovms, openvino, sys; print(sys.modules['openvino_telemetry'])"
    imported = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=120
    )
    assert imported.stdout.strip() == "None", imported.stderr
    started = subprocess.run(
        [sys.executable, "-m", "pyovms", "--config_path", str(tmp_path / "config.json"), "--port", str(free_port()),
         "--grpc_bind_address", "127.0.0.1"],
        env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 1 and "JSON schema parse error" in started.stderr
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
