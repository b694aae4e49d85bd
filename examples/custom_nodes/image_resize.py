"""Custom node library: centre-crop and resize NHWC images with OpenCV (pyovms's Python custom node interface).

Input `image` FP32 [N, H, W, C]; output `image` FP32 [N, height, width, C], the largest centred square (or the
`crop` fraction of it) resized bilinearly. Params: `height`, `width` (required), `crop` (default "1.0"),
`channels` (default "3").
"""

from __future__ import annotations

import cv2
import numpy as np


def initialize(params: dict[str, str]) -> dict[str, float | int]:
    return {
        "height": int(params["height"]),
        "width": int(params["width"]),
        "crop": float(params.get("crop", "1.0")),
        "channels": int(params.get("channels", "3")),
    }


def get_inputs_info(params: dict[str, str], state: dict) -> dict[str, tuple[str, list[int]]]:
    return {"image": ("FP32", [-1, -1, -1, state["channels"]])}


def get_outputs_info(params: dict[str, str], state: dict) -> dict[str, tuple[str, list[int]]]:
    return {"image": ("FP32", [-1, state["height"], state["width"], state["channels"]])}


def execute(inputs: dict[str, np.ndarray], params: dict[str, str], state: dict) -> dict[str, np.ndarray]:
    images = inputs["image"]
    _, height, width, _ = images.shape
    side = int(min(height, width) * state["crop"])
    top, left = (height - side) // 2, (width - side) // 2
    resized = [
        cv2.resize(image[top : top + side, left : left + side], (state["width"], state["height"])) for image in images
    ]
    out = np.stack(resized).astype(np.float32)
    return {"image": out.reshape(len(images), state["height"], state["width"], -1)}
