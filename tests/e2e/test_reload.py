"""Live reload (spec §4.4): version directories appearing and disappearing under load, config.json changes,
an invalid file, `POST /v1/config/reload`, and pipelines following the models they need."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.server_process import ServerProcess, serve_config, wait_for

X = np.zeros((1, 10), dtype=np.float32)


def _add_version(base: Path, version: int, constant: float) -> None:
    """Write a version directory atomically (built aside, then renamed into place)."""
    staging = base.parent / f".staging-{base.name}-{version}"
    models.build_add_constant(staging / "model.xml", [1, 10], constant)
    os.rename(staging, base / str(version))


def _infer(stub, name: str, version: str = "") -> service_pb2.ModelInferResponse:
    request = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(X.tobytes())
    return stub.ModelInfer(request, timeout=30)


def _value(response: service_pb2.ModelInferResponse) -> float:
    return float(np.frombuffer(response.raw_output_contents[0], dtype=np.float32)[0])


def _rest(server: ServerProcess, method: str, path: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(server.rest_address, timeout=60)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else {}
    finally:
        connection.close()


def test_versions_switch_under_load_with_no_failed_request(tmp_path):
    base = tmp_path / "m"
    base.mkdir()
    _add_version(base, 1, 1.0)
    server = serve_config(
        tmp_path, {"model_config_list": [{"config": {"name": "m", "base_path": "m"}}]},
        "--file_system_poll_wait_seconds", "1",
    )  # fmt: skip
    answers: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        with grpc.insecure_channel(server.address) as channel:
            from tritonclient.grpc import service_pb2_grpc

            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while not stop.is_set():
                try:
                    answers.append(_value(_infer(stub, "m")))
                except grpc.RpcError as exc:
                    failures.append(exc)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        wait_for(lambda: len(answers) > 20)
        _add_version(base, 2, 2.0)  # the new highest version becomes the default
        wait_for(lambda: answers and answers[-1] == 2.0)
        shutil.rmtree(base / "2")  # and when it goes, version 1 serves again
        wait_for(lambda: answers[-1] == 1.0)
        count = len(answers)
        wait_for(lambda: len(answers) > count + 20)
    finally:
        stop.set()
        worker.join(30)
        log = server.log()
        server.stop()
    assert not failures, failures[:3]
    assert {1.0, 2.0} <= set(answers)
    print(f"reload under load: {len(answers) + len(failures)} requests, {len(failures)} failed")
    assert 'STATUS CHANGE: Version 2 of model m status change. New status: ( "state": "AVAILABLE"' in log
    assert 'STATUS CHANGE: Version 2 of model m status change. New status: ( "state": "END"' in log


@pytest.fixture
def manual(tmp_path):
    """A server that reloads only when asked (`POST /v1/config/reload`), for deterministic steps."""
    base = tmp_path / "m"
    base.mkdir()
    _add_version(base, 1, 1.0)
    models.build_add_constant(tmp_path / "other" / "1" / "model.xml", [1, 10], 5.0)
    pipeline = {
        "name": "p",
        "inputs": ["in"],
        "nodes": [{"name": "n", "type": "DL model", "model_name": "m",
                   "inputs": [{"x": {"node_name": "request", "data_item": "in"}}],
                   "outputs": [{"data_item": "y", "alias": "y"}]}],
        "outputs": [{"out": {"node_name": "n", "data_item": "y"}}],
    }  # fmt: skip
    config = {"model_config_list": [{"config": {"name": "m", "base_path": "m"}}], "pipeline_config_list": [pipeline]}
    server = serve_config(tmp_path, config, "--file_system_poll_wait_seconds", "0")
    yield server, tmp_path, config
    server.stop()


def _write(root: Path, config: dict) -> None:
    (root / "config.json").write_text(json.dumps(config))


def test_rest_reload_applies_versions_and_answers_201_then_200(manual):
    server, root, _ = manual
    assert _rest(server, "POST", "/v1/config/reload")[0] == 200  # nothing changed
    _add_version(root / "m", 2, 2.0)
    status, body = _rest(server, "POST", "/v1/config/reload")
    assert status == 201
    assert [v["state"] for v in body["m"]["model_version_status"]] == ["END", "AVAILABLE"]
    assert _value(_infer(server.stub, "m")) == 2.0
    with pytest.raises(grpc.RpcError) as info:
        _infer(server.stub, "m", "1")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Model with requested version is retired - name: m; version: 1"
    assert _rest(server, "POST", "/v1/config/reload")[0] == 200


def test_config_changes_add_and_retire_models(manual):
    server, root, config = manual
    added = [
        {"config": {"name": "ghost", "base_path": "does/not/exist"}},
        {"config": {"name": "other", "base_path": "other"}},
    ]
    _write(root, {**config, "model_config_list": [*config["model_config_list"], *added]})
    assert _rest(server, "POST", "/v1/config/reload")[0] == 201
    assert _value(_infer(server.stub, "other")) == 5.0  # the invalid entry (ghost) is skipped, the rest applied
    with pytest.raises(grpc.RpcError) as info:
        _infer(server.stub, "ghost")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    _write(root, config)
    assert _rest(server, "POST", "/v1/config/reload")[0] == 201
    with pytest.raises(grpc.RpcError) as info:
        _infer(server.stub, "other")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert _value(_infer(server.stub, "m")) == 1.0


def test_a_changed_model_config_reloads_its_versions(manual):
    server, root, config = manual
    changed = json.loads(json.dumps(config))
    changed["model_config_list"][0]["config"]["nireq"] = 2
    _write(root, changed)
    assert _rest(server, "POST", "/v1/config/reload")[0] == 201
    assert _value(_infer(server.stub, "m")) == 1.0
    assert server.log().count("Loaded model m; version: 1") == 2


def test_an_invalid_file_changes_nothing(manual):
    server, root, _ = manual
    (root / "config.json").write_text("{ not json")
    status, body = _rest(server, "POST", "/v1/config/reload")
    assert status == 412
    assert body["error"].startswith(
        "Reloading config file failed. Check server logs for more info. - The file is not valid json - config.json: "
    )  # the file's name, not the server's path to it (the log has that)
    assert str(root) not in body["error"] and f"{root / 'config.json'}: " in server.log()
    assert _value(_infer(server.stub, "m")) == 1.0


def test_pipelines_follow_the_models_they_need(manual):
    server, root, config = manual

    def pipeline_value() -> float:
        request = service_pb2.ModelInferRequest(model_name="p")
        request.inputs.add(name="in", datatype="FP32", shape=[1, 10])
        request.raw_input_contents.append(X.tobytes())
        return _value(server.stub.ModelInfer(request, timeout=30))

    assert pipeline_value() == 1.0
    _write(root, {**config, "model_config_list": []})
    assert _rest(server, "POST", "/v1/config/reload")[0] == 201
    with pytest.raises(grpc.RpcError) as info:
        pipeline_value()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details().startswith("Pipeline is not loaded yet - name: p; ")
    _write(root, config)
    assert _rest(server, "POST", "/v1/config/reload")[0] == 201
    assert pipeline_value() == 1.0
