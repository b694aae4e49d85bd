"""The servers a benchmark drives, each on 127.0.0.1 and free ports: pyovms, and the peers of scenario s5, each in
its own virtual environment, running the same OpenVINO model:

- MLServer 1.7 with a custom runtime (`MLModel`) that runs the model through one OpenVINO infer request per call;
- the KServe Python server 0.21 with a `kserve.Model` that does the same.

`ensure_venv` creates a peer's environment once (under ~/.cache/pyovms-bench by default) with pip from the package
registry; `start_*` starts a server and returns a handle with its gRPC address once its models are ready.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

PEER_PACKAGES = {
    # MLServer's default worker process crashes with uvloop 0.23; 0.21 is the newest that works.
    "mlserver": ["mlserver==1.7.*", "uvloop==0.21.*", "openvino==2026.4.*"],
    "kserve": ["kserve==0.21.*", "openvino==2026.4.*"],
}

MLSERVER_RUNTIME = """
import numpy as np
import openvino as ov
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OpenVINORuntime(MLModel):
    async def load(self) -> bool:
        compiled = ov.Core().compile_model(self.settings.parameters.uri, "CPU")
        self._request = compiled.create_infer_request()
        self._output = compiled.outputs[0].get_any_name()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        array = NumpyCodec.decode_input(payload.inputs[0])
        self._request.infer({0: array})
        result = self._request.get_output_tensor(0).data.copy()
        output = NumpyCodec.encode_output(name=self._output, payload=result)
        return InferenceResponse(model_name=self.name, outputs=[output])
"""

KSERVE_SERVER = """
import sys

import openvino as ov
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class OpenVINOModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path

    def load(self):
        compiled = ov.Core().compile_model(self.path, "CPU")
        self._request = compiled.create_infer_request()
        self._output = compiled.outputs[0].get_any_name()
        self.ready = True
        return True

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        array = payload.inputs[0].as_numpy()
        self._request.infer({0: array})
        result = self._request.get_output_tensor(0).data.copy()
        output = InferOutput(name=self._output, shape=list(result.shape), datatype="FP32")
        output.set_data_from_numpy(result)
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id)


if __name__ == "__main__":
    name, path, http_port, grpc_port = sys.argv[1:5]
    model = OpenVINOModel(name, path)
    model.load()
    ModelServer(http_port=int(http_port), grpc_port=int(grpc_port), workers=1).start([model])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_peer_dir() -> Path:
    return Path(os.environ.get("PYOVMS_BENCH_DIR", Path.home() / ".cache" / "pyovms-bench"))


def ensure_venv(peer: str, root: Path) -> Path:
    """The python of the peer's virtual environment, created and filled on first use."""
    venv = root / f"venv-{peer}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES[peer]], check=True)
        marker.write_text(" ".join(PEER_PACKAGES[peer]))
    return python


@dataclass
class Peer:
    """A running server."""

    name: str
    address: str
    process: subprocess.Popen
    rest_address: str = ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _wait_models_ready(
    peer: Peer, models: list[str], timeout: float = 180, connections: int = 1, metadata: tuple = ()
) -> Peer:
    """Wait until `models` are ready, asked over `connections` separate connections (workers sharing a port are
    reached per connection, so several connections make it likely that every worker has answered ready), with
    `metadata` (what an API key or a restricted health group needs)."""
    from pyovms.generated import grpc_predict_v2_pb2 as pb

    deadline = time.monotonic() + timeout
    pending = [(model, index) for index in range(connections) for model in models]
    while pending and time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {peer.process.returncode}")
        model, index = pending[0]
        options = [("grpc.use_local_subchannel_pool", 1), ("pyovms.bench.connection", index)]
        with grpc.insecure_channel(peer.address, options=options) as channel:
            ready = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelReady", response_deserializer=pb.ModelReadyResponse.FromString
            )
            try:
                request = pb.ModelReadyRequest(name=model).SerializeToString()
                if ready(request, timeout=1, metadata=metadata or None).ready:
                    pending.pop(0)
                    continue
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    if pending:
        peer.stop()
        raise RuntimeError(f"{peer.name} did not serve {sorted({m for m, _ in pending})} within {timeout} s")
    return peer


def start_pyovms(config: Path, models: list[str], extra_args: list[str], metadata: tuple = ()) -> Peer:
    """pyovms serving `config` over gRPC and REST, once `models` are ready (asked with `metadata`)."""
    port, rest_port = free_port(), free_port()
    command = [sys.executable, "-m", "pyovms", "--config_path", str(config), "--port", str(port)]
    command += ["--rest_port", str(rest_port), "--grpc_bind_address", "127.0.0.1", "--rest_bind_address", "127.0.0.1"]
    command += ["--log_level", "WARNING", *extra_args]
    peer = Peer("pyovms", f"127.0.0.1:{port}", subprocess.Popen(command), f"127.0.0.1:{rest_port}")
    return _wait_models_ready(peer, models, connections=8 if "--grpc_workers" in extra_args else 1, metadata=metadata)


def start_mlserver(python: Path, workdir: Path, model: str, model_path: Path) -> Peer:
    """MLServer serving `model` from `model_path` with the OpenVINO runtime above."""
    workdir.mkdir(parents=True, exist_ok=True)
    grpc_port = free_port()
    settings = {"host": "127.0.0.1", "http_port": free_port(), "grpc_port": grpc_port, "metrics_port": free_port()}
    (workdir / "settings.json").write_text(json.dumps(settings))
    model_dir = workdir / model
    model_dir.mkdir(exist_ok=True)
    (model_dir / "runtime.py").write_text(textwrap.dedent(MLSERVER_RUNTIME))
    model_settings = {
        "name": model,
        "implementation": "runtime.OpenVINORuntime",
        "parameters": {"uri": str(model_path)},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = python.parent / "mlserver"
    process = subprocess.Popen(
        [str(mlserver), "start", str(workdir)], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return _wait_models_ready(Peer("mlserver", f"127.0.0.1:{grpc_port}", process), [model])


def start_kserve(python: Path, workdir: Path, model: str, model_path: Path) -> Peer:
    """The KServe Python server serving `model` from `model_path` (it binds all interfaces; ports are random)."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "kserve_server.py"
    script.write_text(textwrap.dedent(KSERVE_SERVER))
    grpc_port = free_port()
    process = subprocess.Popen(
        [str(python), str(script), model, str(model_path), str(free_port()), str(grpc_port)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _wait_models_ready(Peer("kserve", f"127.0.0.1:{grpc_port}", process), [model])
