"""Start the real `pyovms` command as a subprocess on 127.0.0.1 and a free port, and stop it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.soak import rss_mb


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m pyovms ARGS` to completion (for flags that make it exit)."""
    return subprocess.run(
        [sys.executable, "-m", "pyovms", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class ServerProcess:
    """A running `pyovms` server; `address` is host:port of its gRPC API, `rest_address` of its REST API."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        wait_ready: bool = True,
        timeout: float = 90,
        env: dict[str, str] | None = None,
        ready_metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """`ready_metadata`: what ServerReady needs when the health group is restricted."""
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.rest_port = free_port()
        self.rest_address = f"127.0.0.1:{self.rest_port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "pyovms", "--port", str(self.port), "--grpc_bind_address", "127.0.0.1"]
        if "--rest_port" not in args:
            command += ["--rest_port", str(self.rest_port), "--rest_bind_address", "127.0.0.1"]
        command += ["--log_level", "DEBUG", *args]
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        environment = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=environment)
        self.channel = grpc.insecure_channel(
            self.address,
            options=[("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)],
        )
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.ready_metadata = ready_metadata
        if wait_ready:
            self.wait_ready(timeout)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pyovms exited with {self.process.returncode}:\n{self.log()}")
            try:
                request = service_pb2.ServerReadyRequest()
                if self.stub.ServerReady(request, timeout=1, metadata=self.ready_metadata).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pyovms was not ready within {timeout} s:\n{self.log()}")

    def reload_config(self) -> int:
        """POST /v1/config/reload; the HTTP status (200 nothing changed, 201 reloaded)."""
        connection = http.client.HTTPConnection(self.rest_address, timeout=60)
        try:
            connection.request("POST", "/v1/config/reload")
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def gauge(self, metric: str) -> float:
        """The sum of a metric's series on /metrics (metrics must be enabled)."""
        with urllib.request.urlopen(f"http://{self.rest_address}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(metric + "{"))

    def rss_mb(self) -> float:
        """The server's resident memory."""
        return rss_mb(self.process.pid)

    def stop(self) -> int | None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


def serve_config(root: Path, config: dict, *args: str) -> ServerProcess:
    """Write `config` as root/config.json and start pyovms on it (log in root/log), ready."""
    (root / "config.json").write_text(json.dumps(config))
    return ServerProcess(["--config_path", str(root / "config.json"), *args], root / "log")


def wait_for(predicate, timeout: float = 60) -> None:
    """Poll `predicate` every 0.1 s until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")
