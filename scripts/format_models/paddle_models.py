"""Make the PaddlePaddle test models of tests/models/formats: `paddle/model.pdmodel` + `model.pdiparams` (the program
format OpenVINO reads, saved with FLAGS_enable_pir_api=0; y = 6 * x + 1 on x FP32 [1, 4]) and `paddle_pir/`, the
same layer saved with PaddlePaddle 3's defaults (`model.json` + `model.pdiparams`), which OpenVINO does not read.

Run by hand, never in CI (PaddlePaddle is a 195 MB wheel), from the repository root:

    python3.11 -m venv /tmp/gen-paddle
    /tmp/gen-paddle/bin/pip install paddlepaddle==3.3.1 openvino==2026.4.1
    /tmp/gen-paddle/bin/python scripts/format_models/paddle_models.py

Each save runs in a process of its own, since the program format is chosen when paddle is imported. (Paddle records
each operator's creation call stack in model.pdmodel, so the file names this script and the venv's paths.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import FORMATS, INPUT_VALUES, write_expected


def save(directory: Path) -> None:
    """Save the layer to directory/model.* in the program format this process imported paddle with; check it."""
    import numpy as np
    import paddle

    layer = paddle.nn.Linear(4, 4)
    layer.weight.set_value(6.0 * np.eye(4, dtype=np.float32))
    layer.bias.set_value(np.ones(4, dtype=np.float32))
    layer.eval()
    spec = [paddle.static.InputSpec([1, 4], "float32", name="x")]
    paddle.jit.save(layer, str(directory / "model"), input_spec=spec)
    output = layer(paddle.to_tensor(INPUT_VALUES)).numpy()
    framework = f"paddlepaddle {paddle.__version__}"
    if (directory / "model.pdmodel").is_file():
        write_expected(directory, "paddle", framework, directory / "model.pdmodel", output)
        return
    record = {"format": "paddle_pir", "framework": framework, "files": sorted(p.name for p in directory.iterdir())}
    record["openvino_read_errors"] = _openvino_errors(directory)
    (directory / "expected.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


def _openvino_errors(directory: Path) -> dict[str, str]:
    """What OpenVINO says when asked to read each file Paddle wrote."""
    import openvino as ov

    errors = {}
    for file in sorted(directory.iterdir()):
        try:
            ov.Core().read_model(str(file))
            errors[file.name] = "read"
        except Exception as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            message = lines[-1] if lines else type(exc).__name__
            errors[file.name] = message.replace(str(file), file.name)  # no machine's paths in the repository
    return errors


def main() -> None:
    for name, pir in (("paddle", "0"), ("paddle_pir", None)):
        directory = FORMATS / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        environment = dict(os.environ)
        environment.pop("FLAGS_enable_pir_api", None)
        if pir is not None:
            environment["FLAGS_enable_pir_api"] = pir
        subprocess.run([sys.executable, __file__, str(directory)], env=environment, check=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        save(Path(sys.argv[1]))
    else:
        main()
