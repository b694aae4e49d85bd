"""The benchmark models, built locally with OpenVINO's Python API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pyovms.demo import build_dummy

HEAVY_SHAPE = (1, 3, 224, 224)


def build_heavy(path: Path, seed: int = 0) -> Path:
    """An image-sized conv net: input `input` FP32 [1,3,224,224] (~600 KB), output `output` [1,1000]."""
    rng = np.random.default_rng(seed)
    x = ops.parameter(list(HEAVY_SHAPE), ov.Type.f32, name="input")
    y = x
    for cin, cout, stride in [(3, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1)]:
        weights = ops.constant((rng.standard_normal((cout, cin, 3, 3)) * 0.05).astype(np.float32))
        y = ops.relu(ops.convolution(y, weights, [stride, stride], [1, 1], [1, 1], [1, 1]))
    y = ops.reduce_mean(y, ops.constant(np.array([2, 3], dtype=np.int64)), False)
    y = ops.matmul(y, ops.constant(rng.standard_normal((64, 1000)).astype(np.float32)), False, False)
    y = ops.softmax(y, 1)
    y.output(0).get_tensor().set_names({"output"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([y.output(0)], [x], "heavy"), str(path))
    return path


def write_repository(root: Path, nireq: int = 0) -> Path:
    """`dummy` and `heavy` under root with a config.json; returns the config path."""
    build_dummy(root / "dummy" / "1" / "model.xml")
    build_heavy(root / "heavy" / "1" / "model.xml")
    extra = {"nireq": nireq} if nireq else {}
    config = {
        "model_config_list": [
            {"config": {"name": "dummy", "base_path": "dummy", **extra}},
            {"config": {"name": "heavy", "base_path": "heavy", **extra}},
        ]
    }
    path = root / "config.json"
    path.write_text(json.dumps(config))
    return path
