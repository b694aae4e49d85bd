"""What the object storage tests share: the model input they send, inference and readiness through a raw stub, and
Azurite's development account key."""

from __future__ import annotations

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

X = np.arange(10, dtype=np.float32).reshape(1, 10)
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's documented development account key


def infer(stub, name: str, version: str = "") -> np.ndarray:
    """X through model `name` (an [1,10] FP32 input `x`), the [1,10] output."""
    request = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(X.tobytes())
    return np.frombuffer(stub.ModelInfer(request, timeout=30).raw_output_contents[0], np.float32).reshape(1, 10)


def ready(stub, name: str, version: str = "") -> bool:
    try:
        return stub.ModelReady(service_pb2.ModelReadyRequest(name=name, version=version), timeout=10).ready
    except grpc.RpcError:
        return False
