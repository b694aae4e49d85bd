"""Models in S3 (docs/remote_storage.md), against a real S3-protocol server started here (moto's standalone server, on
127.0.0.1): single-model mode and config.json, versions added and removed in the bucket under load, a version
uploaded in two steps, a missing bucket next to a model that serves, a restart with a warm cache, and the message
for a missing extra."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from . import models
from .server_process import ServerProcess, free_port, wait_for

X = np.arange(10, dtype=np.float32).reshape(1, 10)
SECRET = "secret-never-logged"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1, with the environment a pyovms server reads it with."""
    import boto3

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key=SECRET)  # fmt: skip

    def up() -> bool:
        try:
            client.list_buckets()
            return True
        except Exception:
            return False

    wait_for(up, timeout=60)
    client.env = {**CREDENTIALS, "S3_ENDPOINT": f"127.0.0.1:{port}"}  # OVMS's form: no scheme means http
    yield client
    process.terminate()
    process.wait(10)
    log.close()


def _upload(client, bucket: str, prefix: str, directory: Path, only: str | None = None) -> None:
    """Every file below `directory` to s3://bucket/prefix/... (or only those whose name ends with `only`)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and (only is None or path.name.endswith(only)):
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(directory).as_posix()}")


def _delete(client, bucket: str, prefix: str) -> None:
    for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


def _model_dir(root: Path, versions: dict[int, float]) -> Path:
    """A local model directory whose version v adds versions[v] to its [1,10] input."""
    for version, constant in versions.items():
        models.build_add_constant(root / str(version) / "model.xml", [1, 10], constant)
    return root


def _infer(stub, name: str, version: str = "") -> np.ndarray:
    request = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(X.tobytes())
    return np.frombuffer(stub.ModelInfer(request, timeout=30).raw_output_contents[0], np.float32).reshape(1, 10)


def _ready(stub, name: str, version: str = "") -> bool:
    try:
        return stub.ModelReady(service_pb2.ModelReadyRequest(name=name, version=version), timeout=10).ready
    except grpc.RpcError:
        return False


def test_single_model_from_s3_and_a_warm_restart(s3, tmp_path):
    s3.create_bucket(Bucket="single")
    _upload(s3, "single", "models/plus", _model_dir(tmp_path / "local", {1: 5.0}))
    env = {**s3.env, "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--model_name", "plus", "--model_path", "s3://single/models/plus"]
    for start in ("cold", "warm"):
        server = ServerProcess(args, tmp_path / f"log_{start}", env=env)
        try:
            np.testing.assert_array_equal(_infer(server.stub, "plus"), X + 5)
        finally:
            server.stop()
    cold, warm = (tmp_path / "log_cold").read_text(), (tmp_path / "log_warm").read_text()
    assert "s3://single/models/plus/1: downloaded 2 files" in cold
    assert "s3://single/models/plus/1: unchanged, loaded from the cache" in warm
    assert "downloaded" not in warm
    cached = list((tmp_path / "cache").glob("*/1"))
    assert len(cached) == 1 and (cached[0] / "model.xml").is_file() and (cached[0] / "model.bin").is_file()


def test_versions_added_and_removed_in_the_bucket_under_load(s3, tmp_path):
    s3.create_bucket(Bucket="live")
    local = _model_dir(tmp_path / "local", {1: 1.0, 2: 2.0, 3: 3.0})
    _upload(s3, "live", "m/1", local / "1")
    config = {"model_config_list": [{"config": {"name": "m", "base_path": "s3://live/m",
                                                 "model_version_policy": {"all": {}}}}]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**s3.env, "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / "cache")}
    server = ServerProcess(
        ["--config_path", str(tmp_path / "config.json"), "--file_system_poll_wait_seconds", "1"],
        tmp_path / "log",
        env=env,
    )
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:  # the default version, all the time
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while not stop.is_set():
                try:
                    _infer(stub, "m")
                except grpc.RpcError as exc:
                    failures.append(exc.details())

    worker = threading.Thread(target=load)
    try:
        np.testing.assert_array_equal(_infer(server.stub, "m"), X + 1)
        worker.start()
        _upload(s3, "live", "m/2", local / "2")  # a version added
        wait_for(lambda: _ready(server.stub, "m", "2"), timeout=60)
        np.testing.assert_array_equal(_infer(server.stub, "m"), X + 2)
        _delete(s3, "live", "m/2/")  # and removed: version 1 is the default again
        wait_for(lambda: not _ready(server.stub, "m", "2"), timeout=60)
        np.testing.assert_array_equal(_infer(server.stub, "m"), X + 1)
        # a version uploaded in two steps: the graph first (it fails to load), the weights later (it loads)
        _upload(s3, "live", "m/3", local / "3", only=".xml")
        wait_for(lambda: "version: 3; error" in server.log(), timeout=60)
        assert not _ready(server.stub, "m", "3")
        _upload(s3, "live", "m/3", local / "3", only=".bin")
        wait_for(lambda: _ready(server.stub, "m", "3"), timeout=60)
        np.testing.assert_array_equal(_infer(server.stub, "m", "3"), X + 3)
    finally:
        stop.set()
        if worker.is_alive():
            worker.join(60)
        server.stop()
    assert failures == []


def test_a_missing_bucket_leaves_that_model_out_and_the_others_serve(s3, tmp_path):
    _model_dir(tmp_path / "local", {1: 7.0})
    config = {"model_config_list": [
        {"config": {"name": "gone", "base_path": "s3://no-such-bucket/m"}},
        {"config": {"name": "here", "base_path": str(tmp_path / "local")}},
    ]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    server = ServerProcess(["--config_path", str(tmp_path / "config.json")], tmp_path / "log", env=s3.env)
    try:
        np.testing.assert_array_equal(_infer(server.stub, "here"), X + 7)
        assert not _ready(server.stub, "gone")
        log = server.log()
        assert "model gone: cannot list s3://no-such-bucket/m: The provided base path is invalid or doesn't " in log
        assert SECRET not in log
    finally:
        server.stop()


def test_a_missing_extra_is_named():
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from pyovms.remote_storage import RemoteModelDirectory\n"
        "try:\n    RemoteModelDirectory('s3://b/m').listing()\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == (
        "The provided base path is invalid or doesn't exists - s3:// paths need s3fs: pip install 'pyovms[s3]'"
    )
