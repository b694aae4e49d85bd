"""Storage that does not answer holds up nothing else (docs/remote_storage.md, "Slow or unreachable storage"): models
on S3, GCS and Azure addresses that accept connections and stay silent, or refuse them, beside a local model. The
local one loads and serves its new versions on time, ServerReady comes within the storage timeout, and the silent
models are marked failed with the cause and tried again with a growing delay."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ..support import models
from ..support.server_process import ServerProcess, wait_for
from ..support.storage import AZURITE_ACCOUNT_KEY, X, infer, ready

if not all(importlib.util.find_spec(module) for module in ("s3fs", "gcsfs", "adlfs")):  # not imported here: gcsfs
    pytest.skip("the object storage extras are not installed", allow_module_level=True)  # reads its settings once

TIMESTAMP = re.compile(r"^\[([0-9-]+ [0-9:,]+)\]")


class SilentServer:
    """Accepts TCP connections on 127.0.0.1, reads what clients send and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.socket.getsockname()[1]
        self.requests = 0
        """Connections on which a request arrived."""
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        try:
            if connection.recv(65536):
                self.requests += 1
            while connection.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.socket.close()
        for connection in self._connections:
            connection.close()


def _refusing_port() -> tuple[socket.socket, int]:
    """A port bound on 127.0.0.1 that does not listen: connections to it are refused."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    return bound, bound.getsockname()[1]


def _environment(silent: SilentServer, cache: Path) -> dict[str, str]:
    """GCS and Azure pointed at the silent server; credentials that need no network; no metadata service probes."""
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{silent.port}/devstoreaccount1;"
    )
    return {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{silent.port}",
        "AZURE_STORAGE_CONNECTION_STRING": connection, "PYOVMS_REMOTE_CACHE_DIR": str(cache),
    }  # fmt: skip


def _logged_at(log: str, text: str) -> datetime:
    for line in log.splitlines():
        if text in line:
            found = TIMESTAMP.match(line)
            assert found, line
            return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"not logged: {text}\n{log[-3000:]}")


def test_ready_within_the_timeout_beside_silent_and_refusing_storage(tmp_path):
    """At startup: a local model, and models on a silent S3, GCS and Azure address and on a refusing S3 one. ServerReady
    comes within the timeout (the SDKs alone would retry a silent server for minutes), the local model serves, the
    others are not ready and the log names each one's URL and cause; a silent one is tried again after 1, 2, 4 s."""
    silent = SilentServer()
    bound, refused_port = _refusing_port()
    models.build_add_constant(tmp_path / "local" / "1" / "model.xml", [1, 10], 1.0)
    remote = {
        "silent_s3": f"s3://127.0.0.1:{silent.port}/bucket/m",
        "refused_s3": f"s3://127.0.0.1:{refused_port}/bucket/m",
        "silent_gs": "gs://bucket/m",
        "silent_az": "az://container/m",
    }
    config = {"model_config_list": [
        {"config": {"name": "local", "base_path": str(tmp_path / "local")}},
        *({"config": {"name": name, "base_path": url}} for name, url in remote.items()),
    ]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["--config_path", str(tmp_path / "config.json"), "--file_system_poll_wait_seconds", "1",
            "--storage_timeout_seconds", "3"]  # fmt: skip
    server = ServerProcess(args, tmp_path / "log", env=_environment(silent, tmp_path / "cache"), timeout=120)
    try:
        log = server.log()
        loading = _logged_at(log, "Started gRPC server") - _logged_at(log, "Server ready")
        assert -loading.total_seconds() < 3 + 15, log[-3000:]
        assert silent.requests >= 3  # S3, GCS and Azure each reached the silent server
        assert ready(server.stub, "local")
        np.testing.assert_array_equal(infer(server.stub, "local"), X + 1)
        for name, url in remote.items():
            assert not ready(server.stub, name)
            assert f"model {name}: cannot list {url}: " in log, log[-3000:]
        for name in ("silent_s3", "silent_gs", "silent_az"):
            assert f"{remote[name]}: the storage did not answer within 3 s (--storage_timeout_seconds)" in log
        # Tried again with a delay that doubles: 1, 2, 4 s (the poll period, then twice as long each time).
        attempts = [f"model silent_s3: failure {n} in a row to list {remote['silent_s3']}; next attempt in {d} s"
                    for n, d in ((1, 1), (2, 2), (3, 4))]  # fmt: skip
        wait_for(lambda: attempts[-1] in server.log(), timeout=120)
        assert all(line in server.log() for line in attempts)
        assert server.log().count(f"model silent_s3: cannot list {remote['silent_s3']}") == 1  # logged once
    finally:
        server.stop()
        silent.close()
        bound.close()


def test_a_local_model_updates_while_a_storage_stays_silent(tmp_path):
    """A config change adds models on silent storage with a long timeout (60 s): while their listings hang, the
    poll goes on for the local model, whose new version is served, and the silent models are loading, not ready."""
    silent = SilentServer()
    models.build_add_constant(tmp_path / "local" / "1" / "model.xml", [1, 10], 1.0)
    local = {"config": {"name": "local", "base_path": str(tmp_path / "local")}}
    (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [local]}))
    args = ["--config_path", str(tmp_path / "config.json"), "--file_system_poll_wait_seconds", "1",
            "--storage_timeout_seconds", "60"]  # fmt: skip
    server = ServerProcess(args, tmp_path / "log", env=_environment(silent, tmp_path / "cache"))
    try:
        slow = [{"config": {"name": f"silent_{scheme}", "base_path": url}}
                for scheme, url in (("s3", f"s3://127.0.0.1:{silent.port}/bucket/m"), ("gs", "gs://bucket/m"),
                                    ("az", "az://container/m"))]  # fmt: skip
        (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [local, *slow]}))
        wait_for(lambda: silent.requests >= 3, timeout=60)  # every listing is waiting for an answer
        models.build_add_constant(tmp_path / "local" / "2" / "model.xml", [1, 10], 2.0)
        wait_for(lambda: ready(server.stub, "local", "2"), timeout=30)
        np.testing.assert_array_equal(infer(server.stub, "local"), X + 2)
        log = server.log()
        assert "did not answer" not in log  # the listings were still waiting all along
        assert "model silent_s3: still updating; the next steps leave it out until it ends" in log
        for scheme in ("s3", "gs", "az"):
            assert not ready(server.stub, f"silent_{scheme}")
    finally:
        server.stop()
        silent.close()
