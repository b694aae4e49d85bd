"""An inference of a few seconds started on a thread and seen running in the server: what the shutdown tests send a
signal during. The server serves `slow` (models.build_slow_to_infer) with `ovms_infer_req_active` enabled."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

from .server_process import ServerProcess

SLOW_ARGS = ["--plugin_config", '{"INFERENCE_PRECISION_HINT": "f32"}',  # no bf16 matrix units: slow everywhere
             "--metrics_enable", "--metrics_list", "ovms_infer_req_active"]  # fmt: skip
"""Flags of a server that serves `slow` for these tests (besides its model flags)."""


class InFlight:
    """One ModelInfer of `slow`, sized to about `seconds` of inference, running on a thread of its own."""

    def __init__(self, process: ServerProcess, seconds: float = 3.0) -> None:
        self.rows = 512
        request = self._request(self.rows)
        process.stub.ModelInfer(request, timeout=60)  # warm-up
        started = time.monotonic()
        process.stub.ModelInfer(request, timeout=60)
        per_row = (time.monotonic() - started) / self.rows
        self.rows = min(16384, max(self.rows, int(seconds / per_row)))  # 64 MB at most
        self._process, self._request_message = process, self._request(self.rows)
        self.outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._call)

    @staticmethod
    def _request(rows: int) -> service_pb2.ModelInferRequest:
        request = service_pb2.ModelInferRequest(model_name="slow")
        request.inputs.add(name="x", datatype="FP32", shape=[rows, 1024])
        request.raw_input_contents.append(np.ones((rows, 1024), dtype=np.float32).tobytes())
        return request

    def _call(self) -> None:
        try:
            self.outcome["response"] = self._process.stub.ModelInfer(self._request_message, timeout=60)
        except grpc.RpcError as exc:
            self.outcome["error"] = exc

    def start_and_see_running(self) -> None:
        """Start the call and return as soon as the server's `ovms_infer_req_active` shows it running."""
        self._thread.start()
        deadline = time.monotonic() + 60
        while self._process.gauge("ovms_infer_req_active") < 1 and time.monotonic() < deadline:
            if not self._thread.is_alive():
                break
        # no sleep above: the caller's signal goes as soon as the inference is seen running
        assert "response" not in self.outcome, f"the inference of {self.rows} rows ended before it was seen running"

    def answer(self, timeout: float = 60) -> Any:
        """The response (asserting there was one and that it has every row), once the call has ended."""
        self._thread.join(timeout)
        assert "error" not in self.outcome, self.outcome.get("error")
        assert list(self.outcome["response"].outputs[0].shape) == [self.rows, 1024]
        return self.outcome["response"]

    def error(self, timeout: float = 60) -> grpc.RpcError:
        self._thread.join(timeout)
        assert "error" in self.outcome, "the call was answered"
        return self.outcome["error"]
