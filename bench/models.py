"""The benchmark models, built locally with OpenVINO's Python API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pyovms.repository.demo import build_dummy, build_image_classifier

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


DUMMY_CHAIN = {
    "name": "dummy_chain",
    "inputs": ["b"],
    "nodes": [
        {
            "name": "first",
            "type": "DL model",
            "model_name": "dummy",
            "inputs": [{"b": {"node_name": "request", "data_item": "b"}}],
            "outputs": [{"data_item": "a", "alias": "a"}],
        },
        {
            "name": "second",
            "type": "DL model",
            "model_name": "dummy",
            "inputs": [{"b": {"node_name": "first", "data_item": "a"}}],
            "outputs": [{"data_item": "a", "alias": "a"}],
        },
    ],
    "outputs": [{"a": {"node_name": "second", "data_item": "a"}}],
}
"""A two-node pipeline: dummy into dummy (a = b + 2)."""


def write_repository(root: Path, nireq: int = 0) -> Path:
    """`dummy`, `heavy`, `classifier` (the demo's image model, NHWC endpoint for binary JPEG inputs) and the
    pipeline `dummy_chain` under root with a config.json; returns the config path."""
    build_dummy(root / "dummy" / "1" / "model.xml")
    build_heavy(root / "heavy" / "1" / "model.xml")
    build_image_classifier(root / "classifier" / "1" / "model.xml")
    extra = {"nireq": nireq} if nireq else {}
    config = {
        "model_config_list": [
            {"config": {"name": "dummy", "base_path": "dummy", **extra}},
            {"config": {"name": "heavy", "base_path": "heavy", **extra}},
            {"config": {"name": "classifier", "base_path": "classifier", "layout": "NHWC:NCHW", **extra}},
        ],
        "pipeline_config_list": [DUMMY_CHAIN],
    }
    path = root / "config.json"
    path.write_text(json.dumps(config))
    return path


def photo_jpeg(size: int = 224, quality: int = 90) -> bytes:
    """A photo-like 224x224 JPEG (smooth gradients, shapes, mild noise), about the size of a real one."""
    import cv2

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    picture = np.stack([ys / size * 255, xs / size * 255, (ys + xs) / (2 * size) * 255], axis=-1)
    for _ in range(12):
        cy, cx = rng.integers(0, size, 2).tolist()
        r = int(rng.integers(8, 40))
        picture[(ys - cy) ** 2 + (xs - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
    picture = np.clip(picture + rng.normal(0, 4, picture.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()
