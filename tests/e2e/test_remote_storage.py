"""Models in object storage (docs/remote_storage.md), against real servers of each protocol started here on
127.0.0.1 (moto for S3, gcp-storage-emulator for GCS, Azurite for Azure Blob Storage): single-model mode and
config.json, versions added and removed in the bucket under load, a version uploaded in two steps, a missing bucket
next to a model that serves, a restart with a warm cache, and the message for a missing extra."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from ..support import models
from ..support.server_process import ServerProcess, free_port, wait_for
from ..support.storage import AZURITE_ACCOUNT_KEY, X, infer, ready

SECRET = "secret-never-logged"
PATH_INVALID = "The provided base path is invalid or doesn't exists"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}
ROOT = Path(__file__).resolve().parents[2]


class Storage:
    """A running storage server: its URL scheme, a filesystem to fill it with, and the pyovms server's environment."""

    def __init__(self, scheme: str, fs: Any, env: dict[str, str], create: Callable[[str], None] | None = None):
        self.scheme = scheme
        self.fs = fs
        self.env = env
        self._create = create or fs.mkdir

    def create_bucket(self, bucket: str) -> None:
        self._create(bucket)

    def upload(self, bucket: str, prefix: str, directory: Path, only: str | None = None) -> None:
        """Every file below `directory` to <bucket>/<prefix>/... (or only those whose name ends with `only`)."""
        for path in sorted(directory.rglob("*")):
            if path.is_file() and (only is None or path.name.endswith(only)):
                self.fs.put_file(str(path), f"{bucket}/{prefix}/{path.relative_to(directory).as_posix()}")
        self.fs.invalidate_cache()

    def delete(self, bucket: str, prefix: str) -> None:
        self.fs.invalidate_cache()
        for name in self.fs.find(f"{bucket}/{prefix}"):
            self.fs.rm_file(name)
        self.fs.invalidate_cache()


def _answers(check: Callable[[], object]) -> bool:
    try:
        check()
        return True
    except Exception:
        return False


def _azurite() -> str | None:
    """Azurite's blob server: `.ci/run` installs it with npm under .ci/node (or it is on PATH)."""
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


def _s3(port: int) -> tuple[Storage, list[str]]:
    import boto3
    import s3fs

    endpoint = f"http://127.0.0.1:{port}"
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret=SECRET)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key=SECRET)  # fmt: skip
    env = {**CREDENTIALS, "S3_ENDPOINT": f"127.0.0.1:{port}"}  # OVMS's form: no scheme means http
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return Storage("s3", fs, env, lambda bucket: client.create_bucket(Bucket=bucket)), command


def _gcs(port: int) -> tuple[Storage, list[str]]:
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # no zonal-bucket probe of the emulator over gRPC
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    import gcsfs

    command = [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
               "--port", str(port), "--in-memory"]  # fmt: skip
    return Storage(
        "gs", gcsfs.GCSFileSystem(token="anon"), {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    ), command


def _azure(port: int, data: Path) -> tuple[Storage, list[str]]:
    azurite = _azurite()
    if azurite is None:
        pytest.skip("Azurite is not installed: npm install azurite (.ci/run installs it under .ci/node)")
    import adlfs

    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    command = [azurite, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data), "--silent",
               "--skipApiVersionCheck", "--disableTelemetry"]  # fmt: skip
    fs = adlfs.AzureBlobFileSystem(connection_string=connection)
    return Storage("az", fs, {"AZURE_STORAGE_CONNECTION_STRING": connection}), command


@pytest.fixture(scope="module", params=["s3", "gs", "az"])
def storage(request, tmp_path_factory):
    """Each backend against a real server of its protocol on 127.0.0.1."""
    root = tmp_path_factory.mktemp(f"storage_{request.param}")
    port = free_port()
    backend, command = {"s3": _s3, "gs": _gcs, "az": lambda p: _azure(p, root / "data")}[request.param](port)
    log = open(root / "log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        wait_for(lambda: _answers(lambda: backend.fs.ls("")), timeout=60)
        yield backend
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _model_dir(root: Path, versions: dict[int, float]) -> Path:
    """A local model directory whose version v adds versions[v] to its [1,10] input."""
    for version, constant in versions.items():
        models.build_add_constant(root / str(version) / "model.xml", [1, 10], constant)
    return root


def _served_log(storage: Storage, name: str, url: str, log_path: Path, cache: Path, expected: np.ndarray) -> str:
    """Serve `url` as `name` (downloads cached in `cache`), check one inference against `expected`; the log."""
    env = {**storage.env, "PYOVMS_REMOTE_CACHE_DIR": str(cache)}
    server = ServerProcess(["--model_name", name, "--model_path", url], log_path, env=env)
    try:
        np.testing.assert_array_equal(infer(server.stub, name), expected)
        return server.log()
    finally:
        server.stop()


def test_single_model_from_storage_and_a_warm_restart(storage, tmp_path):
    storage.create_bucket("single")
    storage.upload("single", "models/plus", _model_dir(tmp_path / "local", {1: 5.0}))
    url = f"{storage.scheme}://single/models/plus"
    cold, warm = (
        _served_log(storage, "plus", url, tmp_path / f"log_{start}", tmp_path / "cache", X + 5)
        for start in ("cold", "warm")
    )
    assert f"{url}/1: downloaded 2 files" in cold
    assert f"{url}/1: unchanged, loaded from the cache" in warm
    assert "downloaded" not in warm
    cached = list((tmp_path / "cache").glob("*/1"))
    assert len(cached) == 1 and (cached[0] / "model.xml").is_file() and (cached[0] / "model.bin").is_file()


def test_versions_added_and_removed_in_the_bucket_under_load(storage, tmp_path):
    storage.create_bucket("live")
    local = _model_dir(tmp_path / "local", {1: 1.0, 2: 2.0, 3: 3.0})
    storage.upload("live", "m/1", local / "1")
    config = {"model_config_list": [{"config": {"name": "m", "base_path": f"{storage.scheme}://live/m",
                                                 "model_version_policy": {"all": {}}}}]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**storage.env, "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / "cache")}
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
                    infer(stub, "m")
                except grpc.RpcError as exc:
                    failures.append(exc.details())

    worker = threading.Thread(target=load)
    try:
        np.testing.assert_array_equal(infer(server.stub, "m"), X + 1)
        worker.start()
        storage.upload("live", "m/2", local / "2")  # a version added
        wait_for(lambda: ready(server.stub, "m", "2"), timeout=60)
        np.testing.assert_array_equal(infer(server.stub, "m"), X + 2)
        storage.delete("live", "m/2")  # and removed: version 1 is the default again
        wait_for(lambda: not ready(server.stub, "m", "2"), timeout=60)
        np.testing.assert_array_equal(infer(server.stub, "m"), X + 1)
        # a version uploaded in two steps: the graph first (it fails to load), the weights later (it loads)
        storage.upload("live", "m/3", local / "3", only=".xml")
        wait_for(lambda: "version: 3; error" in server.log(), timeout=60)
        assert not ready(server.stub, "m", "3")
        storage.upload("live", "m/3", local / "3", only=".bin")
        wait_for(lambda: ready(server.stub, "m", "3"), timeout=60)
        np.testing.assert_array_equal(infer(server.stub, "m", "3"), X + 3)
    finally:
        stop.set()
        if worker.is_alive():
            worker.join(60)
        server.stop()
    assert failures == []


def test_a_missing_bucket_leaves_that_model_out_and_the_others_serve(storage, tmp_path):
    _model_dir(tmp_path / "local", {1: 7.0})
    config = {"model_config_list": [
        {"config": {"name": "gone", "base_path": f"{storage.scheme}://no-such-bucket/m"}},
        {"config": {"name": "here", "base_path": str(tmp_path / "local")}},
    ]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    server = ServerProcess(["--config_path", str(tmp_path / "config.json")], tmp_path / "log", env=storage.env)
    try:
        np.testing.assert_array_equal(infer(server.stub, "here"), X + 7)
        assert not ready(server.stub, "gone")
        log = server.log()
        url = f"{storage.scheme}://no-such-bucket/m"
        assert f"model gone: cannot list {url}: {PATH_INVALID} - {url}: there is no bucket or container named " in log
        assert SECRET not in log and AZURITE_ACCOUNT_KEY not in log and "Traceback" not in log
    finally:
        server.stop()


def test_a_missing_extra_is_named():
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from pyovms.repository.remote_storage import RemoteModelDirectory\n"
        "try:\n    RemoteModelDirectory('s3://b/m').listing()\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == (
        "The provided base path is invalid or doesn't exists - s3:// paths need s3fs: pip install 'pyovms[s3]'"
    )


@pytest.mark.parametrize("storage", ["az"], indirect=True)  # moto and the GCS emulator accept any credentials
def test_bad_credentials_leave_the_model_out_and_name_the_cause_not_the_secret(storage, tmp_path):
    storage.create_bucket("locked")
    storage.upload("locked", "m", _model_dir(tmp_path / "local", {1: 1.0}))
    wrong = "d3Jvbmcga2V5IG5ldmVyIGxvZ2dlZA=="
    connection = storage.env["AZURE_STORAGE_CONNECTION_STRING"].replace(AZURITE_ACCOUNT_KEY, wrong)
    config = {"model_config_list": [{"config": {"name": "locked", "base_path": "az://locked/m"}}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    server = ServerProcess(
        ["--config_path", str(tmp_path / "config.json")], tmp_path / "log",
        env={"AZURE_STORAGE_CONNECTION_STRING": connection},
    )  # fmt: skip
    try:
        assert not ready(server.stub, "locked")
        log = server.log()
        assert "model locked: cannot list az://locked/m: The provided base path is invalid" in log
        assert "Server failed to authenticate the request" in log or "AuthenticationFailed" in log, log[-2000:]
        assert wrong not in log and AZURITE_ACCOUNT_KEY not in log
    finally:
        server.stop()


def test_storage_going_away_keeps_the_loaded_versions_serving(tmp_path):
    """A network error (the S3 server stopped) while a model is loaded: it keeps serving, the error is logged once,
    and the poll notices when the storage is back."""
    port = free_port()
    backend, command = _s3(port)

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _answers(lambda: backend.fs.ls("")), timeout=60)
        return process

    moto = start()
    backend.create_bucket("flaky")
    backend.upload("flaky", "m", _model_dir(tmp_path / "local", {1: 4.0}))
    config = {"model_config_list": [{"config": {"name": "m", "base_path": "s3://flaky/m"}}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**backend.env, "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / "cache"), "AWS_MAX_ATTEMPTS": "1"}
    server = ServerProcess(
        ["--config_path", str(tmp_path / "config.json"), "--file_system_poll_wait_seconds", "1"], tmp_path / "log",
        env=env,
    )  # fmt: skip
    try:
        np.testing.assert_array_equal(infer(server.stub, "m"), X + 4)
        moto.terminate()
        moto.wait(10)
        wait_for(lambda: "model m: cannot list s3://flaky/m" in server.log(), timeout=120)
        np.testing.assert_array_equal(infer(server.stub, "m"), X + 4)  # the loaded version still serves
        moto = start()  # an in-memory server: the bucket is gone, so the storage answers again, with an error
        backend.create_bucket("flaky")
        backend.upload("flaky", "m", tmp_path / "local")
        wait_for(lambda: "model m: s3://flaky/m can be listed again" in server.log(), timeout=120)
        wait_for(lambda: ready(server.stub, "m"), timeout=60)  # (a poll between the bucket and its objects retires it)
        np.testing.assert_array_equal(infer(server.stub, "m"), X + 4)
        assert server.log().count("model m: cannot list s3://flaky/m") <= 2  # once per distinct error, not per poll
    finally:
        server.stop()
        moto.terminate()
        moto.wait(10)


def _moto_with_iam(port: int) -> tuple[Storage, subprocess.Popen, dict[str, str]]:
    """A moto S3 server that checks signatures: an IAM user allowed s3:* is made while moto accepts anything, then
    moto is told to authenticate every request (its /moto-api/reset-auth). Returns the user's credentials."""
    import boto3

    backend, command = _s3(port)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _answers(lambda: backend.fs.ls("")), timeout=60)
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key=SECRET)  # fmt: skip
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    arn = iam.create_policy(PolicyName="read", PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="reader", PolicyArn=arn)
    return backend, process, {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def test_s3_bad_credentials_leave_the_model_out_and_name_the_cause_not_the_secret(tmp_path):
    import urllib.request

    port = free_port()
    backend, moto, user = _moto_with_iam(port)
    try:
        backend.create_bucket("locked")
        backend.upload("locked", "m", _model_dir(tmp_path / "local", {1: 2.0}))
        enforce = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})  # fmt: skip
        urllib.request.urlopen(enforce, timeout=30).read()
        wrong = "wrong-secret-never-logged"
        cases = {"right": user, "wrong": {**user, "AWS_SECRET_ACCESS_KEY": wrong},
                 "unknown": {"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000", "AWS_SECRET_ACCESS_KEY": wrong}}  # fmt: skip
        logs = {}
        for case, credentials in cases.items():
            env = {**backend.env, **credentials, "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / f"cache_{case}")}
            server = ServerProcess(
                ["--model_name", "locked", "--model_path", "s3://locked/m"], tmp_path / f"log_{case}", env=env
            )
            try:
                if case == "right":  # moto does check: the user's own key is served
                    np.testing.assert_array_equal(infer(server.stub, "locked"), X + 2)
                else:
                    assert not ready(server.stub, "locked")
                logs[case] = server.log()
            finally:
                server.stop()
        prefix = "model locked: cannot list s3://locked/m: The provided base path is invalid or doesn't exists - "
        assert (
            prefix + "s3://locked/m: PermissionError: The request signature we calculated does not match"
            in (logs["wrong"])
        )
        assert (
            prefix + "s3://locked/m: PermissionError: The AWS Access Key Id you provided does not exist"
            in (logs["unknown"])
        )
        for log in logs.values():
            assert wrong not in log and user["AWS_SECRET_ACCESS_KEY"] not in log
    finally:
        moto.terminate()
        moto.wait(10)


@pytest.mark.parametrize("storage", ["gs"], indirect=True)
def test_gcs_a_key_file_that_is_refused_is_named_with_its_cause_not_its_content(storage, tmp_path):
    """The GCS emulator accepts any token, so what is tested is the key file google-auth refuses (a service account
    whose private key does not parse) and one that does not exist."""
    storage.create_bucket("keyed")
    storage.upload("keyed", "m", _model_dir(tmp_path / "local", {1: 1.0}))
    key_file = tmp_path / "service-account.json"
    key_material = "TOPSECRETKEYMATERIAL"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k1", "client_email": "r@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "http://127.0.0.1:9/token",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{key_material}\n-----END PRIVATE KEY-----\n",
    }))  # fmt: skip
    prefix = (
        "model keyed: cannot list gs://keyed/m: The provided base path is invalid or doesn't exists - gs://keyed/m: "
    )
    for path, cause in [
        (key_file, f"DefaultCredentialsError: ('Failed to load service account credentials from {key_file}'"),
        (tmp_path / "missing.json", f"DefaultCredentialsError: File {tmp_path / 'missing.json'} was not found."),
    ]:
        env = {**storage.env, "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
        server = ServerProcess(["--model_name", "keyed", "--model_path", "gs://keyed/m"], tmp_path / "log", env=env)
        try:
            assert not ready(server.stub, "keyed")
            log = server.log()
            assert prefix + cause in log, log[-2000:]
            assert key_material not in log
        finally:
            server.stop()


@pytest.mark.parametrize("storage", ["s3"], indirect=True)
def test_a_large_download_logs_its_progress(storage, tmp_path):
    from pyovms.repository.remote_storage import LARGE_FILE_BYTES

    storage.create_bucket("large")
    local = _model_dir(tmp_path / "local", {1: 3.0})
    (local / "1" / "extra.bin").write_bytes(os.urandom(LARGE_FILE_BYTES))  # not read by OpenVINO, only downloaded
    storage.upload("large", "m", local)
    log = _served_log(storage, "large", "s3://large/m", tmp_path / "log", tmp_path / "cache", X + 3)
    assert "s3://large/m/1: downloading 3 files, 67 MB (large: extra.bin)" in log
    progress = [line.split("s3://large/m/1: ")[1] for line in log.splitlines() if "% downloaded (" in line]
    percents = [int(line.split("%")[0]) for line in progress]  # s3fs reports in parts of 50 MB: 78 %, then 100 %
    assert len(percents) >= 2 and percents == sorted(set(percents)), progress
    assert progress[-1] == "100% downloaded (67 of 67 MB)"
    assert "s3://large/m/1: downloaded 3 files, 67.1 MB in " in log


@pytest.mark.parametrize("storage", ["s3"], indirect=True)
def test_staging_left_by_a_dead_download_is_removed_and_a_live_one_is_not(storage, tmp_path, monkeypatch):
    import fcntl

    from pyovms.repository.remote_storage import STALE_AFTER_S, RemoteModelDirectory

    storage.create_bucket("staging")
    storage.upload("staging", "m", _model_dir(tmp_path / "local", {1: 6.0}))
    monkeypatch.setenv("PYOVMS_REMOTE_CACHE_DIR", str(tmp_path / "cache"))
    cache = RemoteModelDirectory("s3://staging/m").cache  # the model URL's directory in the cache
    old = time.time() - STALE_AFTER_S - 60
    staging = {name: cache / name for name in (".1-dead", ".1-live", ".1-new")}
    for name, path in staging.items():
        (path / "partial").mkdir(parents=True)
        if name != ".1-new":
            os.utime(path, (old, old))
    live = os.open(staging[".1-live"], os.O_RDONLY)  # held as a download in another worker holds it
    fcntl.flock(live, fcntl.LOCK_EX)
    try:
        log = _served_log(storage, "m", "s3://staging/m", tmp_path / "log", tmp_path / "cache", X + 6)
    finally:
        os.close(live)
    assert f"removing {staging['.1-dead']}, left by a download that did not finish" in log
    assert not staging[".1-dead"].exists()
    assert staging[".1-live"].is_dir() and staging[".1-new"].is_dir()
    assert sorted(p.name for p in cache.iterdir()) == [".1-live", ".1-new", "1"]


def test_a_clients_load_stays_under_the_served_prefix(storage, tmp_path):
    """With model control open, a load may name a URL beside the configured model (same bucket and prefix); another
    bucket, another prefix or a `..` segment is refused before anything is listed or downloaded."""
    storage.create_bucket("served")
    storage.create_bucket("elsewhere")
    storage.upload("served", "models/a", _model_dir(tmp_path / "local" / "a", {1: 1.0}))
    storage.upload("served", "models/b", _model_dir(tmp_path / "local" / "b", {1: 2.0}))
    storage.upload("served", "private/c", _model_dir(tmp_path / "local" / "c", {1: 3.0}))
    storage.upload("elsewhere", "models/c", _model_dir(tmp_path / "local" / "c", {1: 3.0}))
    scheme = storage.scheme
    config = {"model_config_list": [{"config": {"name": "a", "base_path": f"{scheme}://served/models/a"}}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**storage.env, "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--config_path", str(tmp_path / "config.json"), "--allow_model_control"]
    server = ServerProcess(args, tmp_path / "log", env=env)
    client = grpcclient.InferenceServerClient(server.address)
    try:
        client.load_model("b", config=json.dumps({"base_path": f"{scheme}://served/models/b"}))
        np.testing.assert_array_equal(infer(server.stub, "b"), X + 2)
        for url in (f"{scheme}://elsewhere/models/c", f"{scheme}://served/private/c",
                    f"{scheme}://served/models/../private/c", f"{scheme}://served/models/./b"):  # fmt: skip
            with pytest.raises(InferenceServerException) as info:
                client.load_model("c", config=json.dumps({"base_path": url}))
            assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
            assert info.value.message() == f"Model path is outside the model repository - name: c; base_path: {url}"
        assert "c" not in [m.name for m in client.get_model_repository_index().models]
        assert not [line for line in server.log().splitlines() if "download" in line and "/c/" in line]
    finally:
        client.close()
        server.stop()


_LOG_LINE = re.compile(r"^\[[^\]]*\]\[\d+\]\[([^\]]+)\]\[(\w+)\] ")


def _library_lines(log: str, levels: tuple[str, ...] = ("DEBUG", "INFO")) -> list[str]:
    """Log lines of loggers outside pyovms at `levels`."""
    return [
        line
        for line in log.splitlines()
        if (found := _LOG_LINE.match(line)) and not found.group(1).startswith("pyovms") and found.group(2) in levels
    ]


def test_an_idle_remote_model_writes_no_library_line_per_poll(storage, tmp_path):
    """At the default levels, a model polled every second in storage logs nothing of its SDK's (Azure logs each
    request at INFO); `--library_log_level INFO` brings those lines back."""
    storage.create_bucket("quiet")
    storage.upload("quiet", "m/1", _model_dir(tmp_path / "local", {1: 1.0, 2: 2.0}) / "1")
    env = {**storage.env, "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / "cache")}
    url = f"{storage.scheme}://quiet/m"
    args = ["--model_name", "m", "--model_path", url, "--file_system_poll_wait_seconds", "1", "--log_level", "INFO"]
    server = ServerProcess(args, tmp_path / "log", env=env)
    try:
        storage.upload("quiet", "m/2", tmp_path / "local" / "2")  # served only after some polls have run
        wait_for(lambda: ready(server.stub, "m", "2"), timeout=120)
        assert _library_lines(server.log()) == []
    finally:
        server.stop()
    if storage.scheme == "az":
        server = ServerProcess([*args, "--library_log_level", "INFO"], tmp_path / "log_libraries", env=env)
        try:
            wait_for(lambda: any(line.split("][")[2].startswith("azure") for line in _library_lines(server.log())))
        finally:
            server.stop()


@pytest.mark.parametrize("storage", ["s3"], indirect=True)
def test_the_s3_server_named_in_the_url(storage, tmp_path):
    """OVMS's `s3://host:port/bucket/path`: the server comes from the URL (no S3_ENDPOINT set)."""
    storage.create_bucket("hosted")
    storage.upload("hosted", "models/plus", _model_dir(tmp_path / "local", {1: 4.0}))
    endpoint = storage.env["S3_ENDPOINT"]
    env = {key: value for key, value in storage.env.items() if key != "S3_ENDPOINT"}
    url = f"s3://{endpoint}/hosted/models/plus"
    env["PYOVMS_REMOTE_CACHE_DIR"] = str(tmp_path / "cache")
    server = ServerProcess(["--model_name", "plus", "--model_path", url], tmp_path / "log", env=env)
    try:
        np.testing.assert_array_equal(infer(server.stub, "plus"), X + 4)
        assert f"{url}/1: downloaded 2 files" in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize("storage", ["s3"], indirect=True)
def test_s3_without_credentials_is_read_anonymously(storage, tmp_path):
    """No key in the environment and none in the SDK's chain (no profile files; the instance metadata service is
    turned off so that nothing leaves 127.0.0.1): a public bucket is read anonymously, as OVMS does."""
    import boto3

    storage.create_bucket("public")
    storage.upload("public", "m", _model_dir(tmp_path / "local", {1: 7.0}))
    client = boto3.client("s3", endpoint_url=f"http://{storage.env['S3_ENDPOINT']}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key=SECRET)  # fmt: skip
    readable = {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": ["arn:aws:s3:::public", "arn:aws:s3:::public/*"]}  # fmt: skip
    client.put_bucket_policy(Bucket="public", Policy=json.dumps({"Version": "2012-10-17", "Statement": [readable]}))
    env = {
        "S3_ENDPOINT": storage.env["S3_ENDPOINT"],
        "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true", "PYOVMS_REMOTE_CACHE_DIR": str(tmp_path / "cache"),
    }  # fmt: skip
    server = ServerProcess(["--model_name", "m", "--model_path", "s3://public/m"], tmp_path / "log", env=env)
    try:
        np.testing.assert_array_equal(infer(server.stub, "m"), X + 7)
        assert "No AWS credentials in the environment or the SDK's chain: S3 is read anonymously" in server.log()
    finally:
        server.stop()
