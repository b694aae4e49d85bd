"""What every generator of tests/models/formats shares: the input, the expected.json it writes, and the check that
OpenVINO reads the model and gives the framework's own values. Imported by the generator scripts beside it, which
run by hand in their framework's own virtual environment (never in CI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = Path(__file__).resolve().parents[2] / "tests" / "models" / "formats"
"""Where the generated models are committed."""
INPUT_VALUES = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
"""Every numeric model's input x, FP32 [1, 4]; each computes y = K * x + 1 with its own K."""


def openvino_check(read_path: Path, framework_output: np.ndarray) -> dict[str, Any]:
    """The names, types and shapes OpenVINO reports for the model at `read_path` (what OVMS reports: each port's
    `get_any_name()`), after checking that OpenVINO computes the framework's output."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(read_path))
    compiled = core.compile_model(model, "CPU")
    result = compiled.create_infer_request().infer({0: INPUT_VALUES})
    got = next(iter(result.values()))
    if not np.allclose(got, framework_output, rtol=1e-6):
        raise SystemExit(f"{read_path}: OpenVINO gives {got}, the framework {framework_output}")

    def ports(items: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": port.get_any_name(),
                "datatype": "FP32",
                "shape": [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()],
            }
            for port in items
        ]

    return {"openvino": ov.get_version(), "inputs": ports(model.inputs), "outputs": ports(model.outputs)}


def write_expected(directory: Path, form: str, framework: str, read_path: Path, output: np.ndarray) -> None:
    """expected.json of one numeric model: OpenVINO's names and the framework's values."""
    seen = openvino_check(read_path, output)
    expected = {
        "format": form,
        "framework": framework,
        **seen,
        "input_values": INPUT_VALUES.tolist(),
        "output_values": np.asarray(output, dtype=np.float32).tolist(),
    }
    (directory / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{form}: {json.dumps(expected)}")
