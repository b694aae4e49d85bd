"""A demo model repository built locally with OpenVINO's Python API (nothing is downloaded).

- `dummy`: input `b` FP32 [1,10], output `a` = b + 1 (the classic OVMS test model);
- `resnet`: an image-shaped model with input `0` and output `1463` FP32 [1,1000] (the shapes of OVMS's KServe
  sample clients), served with `layout NHWC:NCHW` so clients send [1,224,224,3]. Its weights are random: its classes
  mean nothing.
- `cat.jpg`: a drawn sample image to send to `resnet` as a JPEG.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ..version import __version__


def build_dummy(path: Path) -> Path:
    """Save the dummy model (a = b + 1) as IR at `path` (a .xml file)."""
    b = ops.parameter([1, 10], ov.Type.f32, name="b")
    a = ops.add(b, ops.constant(np.ones((1, 10), dtype=np.float32)))
    a.output(0).get_tensor().set_names({"a"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([a.output(0)], [b], "dummy"), str(path))
    return path


def build_image_classifier(path: Path, classes: int = 1000, seed: int = 0) -> Path:
    """Save a small NCHW image classifier: input `0` [1,3,224,224], output `1463` [1,classes] (softmax)."""
    rng = np.random.default_rng(seed)
    image = ops.parameter([1, 3, 224, 224], ov.Type.f32, name="0")
    weights = ops.constant(rng.standard_normal((16, 3, 4, 4)).astype(np.float32) * 0.01)
    features = ops.relu(ops.convolution(image, weights, [4, 4], [0, 0], [0, 0], [1, 1]))
    pooled = ops.reduce_mean(features, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    dense = ops.matmul(pooled, ops.constant(rng.standard_normal((16, classes)).astype(np.float32)), False, False)
    probabilities = ops.softmax(dense, 1)
    probabilities.output(0).get_tensor().set_names({"1463"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([probabilities.output(0)], [image], "resnet"), str(path))
    return path


def default_demo_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pyovms" / "demo"


VERSION_FILE = ".pyovms-version"
"""Which pyovms built a demo repository: one built by this version is served as it is (edits included)."""
SAMPLE_IMAGE = "cat.jpg"
"""A JPEG to send to the demo classifier as BYTES (drawn here: nothing is downloaded)."""
DEMO_FILES = ("config.json", "dummy/1/model.xml", "resnet/1/model.xml", SAMPLE_IMAGE)
"""What a complete demo repository holds: one that lacks any is built again (a development install keeps its version
number while the demo grows)."""


def build_demo_repository(root: Path | None = None) -> Path:
    """The demo models and their config.json under `root`, built once per pyovms version: built into a fresh
    directory beside it and renamed into place, so a server never reads a half-written repository; return the config
    path."""
    root = root or default_demo_dir()
    config_path = root / "config.json"
    if _built_by_this_version(root):
        return config_path
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        _write_demo(staging)
        if root.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{root.name}-old-", dir=root.parent))
            os.replace(root, retired / root.name)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(staging, root)
    except OSError:
        if not _built_by_this_version(root):  # another start put it in place first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return config_path


def _built_by_this_version(root: Path) -> bool:
    try:
        same_version = (root / VERSION_FILE).read_text() == __version__
    except OSError:
        return False
    return same_version and all((root / name).is_file() for name in DEMO_FILES)


def _write_demo(root: Path) -> None:
    build_dummy(root / "dummy" / "1" / "model.xml")
    build_image_classifier(root / "resnet" / "1" / "model.xml")
    config = {
        "model_config_list": [
            {"config": {"name": "dummy", "base_path": "dummy"}},
            {"config": {"name": "resnet", "base_path": "resnet", "layout": "NHWC:NCHW"}},
        ]
    }
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_sample_image(root / SAMPLE_IMAGE)
    (root / VERSION_FILE).write_text(__version__)


def write_sample_image(path: Path) -> Path:
    """A 320x240 JPEG: a gradient with a disc, so that the server has something to decode and resize."""
    import cv2

    height, width = 240, 320
    rows, columns = np.mgrid[0:height, 0:width]
    image = np.stack([columns * 255 // width, rows * 255 // height, np.full_like(rows, 96)], axis=-1).astype(np.uint8)
    cv2.circle(image, (width // 2, height // 2), 70, (40, 160, 230), thickness=-1)
    ok, encoded = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode the demo's sample image")
    path.write_bytes(encoded.tobytes())
    return path
