"""The compiled-model cache (`--cache_dir`, OVMS's model_cache.md): the first start fills it, the next one loads
from it, and models with `auto` shapes or batch stay out of it unless `allow_cache` is set."""

from __future__ import annotations

import json
import re

import numpy as np
from tritonclient.grpc import service_pb2

from ..support import models
from ..support.server_process import ServerProcess


def _plus_one(server: ServerProcess, name: str) -> list[float]:
    request = service_pb2.ModelInferRequest(model_name=name)
    request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.zeros((1, 10), np.float32).tobytes())
    return np.frombuffer(server.stub.ModelInfer(request, timeout=30).raw_output_contents[0], np.float32).tolist()


def test_the_cache_is_filled_then_used_and_auto_models_stay_out(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    config = {"model_config_list": [
        {"config": {"name": "cached", "base_path": "dummy"}},
        {"config": {"name": "auto", "base_path": "dummy", "batch_size": "auto"}},
        {"config": {"name": "forced", "base_path": "dummy", "batch_size": "auto", "allow_cache": True}},
    ]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    cache = tmp_path / "cache"
    logs = []
    for start in ("first", "second"):
        server = ServerProcess(
            ["--config_path", str(tmp_path / "config.json"), "--cache_dir", str(cache)], tmp_path / f"log_{start}"
        )
        try:
            for name in ("cached", "auto", "forced"):
                assert _plus_one(server, name) == [1.0] * 10
        finally:
            server.stop()
        logs.append((tmp_path / f"log_{start}").read_text())
        if start == "first":
            blobs = sorted(path.name for path in cache.glob("*.blob"))
            assert len(blobs) == 2, blobs  # `cached` and `forced`: `auto` compiled without the cache
    first, second = logs
    assert f"Model cache is enabled: {cache}" in first
    assert "loaded from the model cache" not in first
    assert re.search(r"Loaded model cached; version: 1; nireq: \d+; loaded from the model cache", second)
    assert re.search(r"Loaded model forced; version: 1; nireq: \d+; loaded from the model cache", second)
    assert re.search(r"Loaded model auto; version: 1; nireq: \d+\n", second)
    assert len(list(cache.glob("*.blob"))) == 2
