"""Custom node library: top-k classes of a score tensor (pyovms's Python custom node interface).

Input `scores` FP32 [N, C]; outputs `classes` INT32 [N, k] (best first) and `probabilities` FP32 [N, k].
Params: `k` (default "1"), `classes` (C, default "-1": any).
"""

from __future__ import annotations

import numpy as np


def initialize(params: dict[str, str]) -> dict[str, int]:
    k = int(params.get("k", "1"))
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return {"k": k, "classes": int(params.get("classes", "-1"))}


def get_inputs_info(params: dict[str, str], state: dict[str, int]) -> dict[str, tuple[str, list[int]]]:
    return {"scores": ("FP32", [-1, state["classes"]])}


def get_outputs_info(params: dict[str, str], state: dict[str, int]) -> dict[str, tuple[str, list[int]]]:
    return {"classes": ("INT32", [-1, state["k"]]), "probabilities": ("FP32", [-1, state["k"]])}


def execute(inputs: dict[str, np.ndarray], params: dict[str, str], state: dict[str, int]) -> dict[str, np.ndarray]:
    scores = inputs["scores"]
    k = min(state["k"], scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {
        "classes": top.astype(np.int32),
        "probabilities": np.take_along_axis(scores, top, axis=1).astype(np.float32),
    }
