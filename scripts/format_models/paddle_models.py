"""Make the PaddlePaddle test models of tests/models/formats. Both hold one Linear layer (weight 6 * identity, bias 1),
so y = 6 * x + 1 on x FP32 [1, 4]:

- `paddle/model.pdmodel` + `model.pdiparams`: the program format OpenVINO's Paddle frontend reads, saved by
  `paddle.jit.save` with FLAGS_enable_pir_api=0. Its expected.json has the names OpenVINO reports and Paddle's values.
- `paddle_pir/`: the same layer saved with PaddlePaddle 3's defaults (PIR), exactly the files Paddle writes
  (`model.json` + `model.pdiparams`). OpenVINO does not read them; its expected.json lists the files and the first
  meaningful line of what `read_model` raises for each.

Run by hand, never in CI (CI never installs PaddlePaddle), from the repository root:

    /root/.pyenv/versions/3.11.7/bin/python -m venv /tmp/venv-paddle
    /tmp/venv-paddle/bin/pip install paddlepaddle==3.3.1 openvino==2026.4.1
    /tmp/venv-paddle/bin/python scripts/format_models/paddle_models.py

Paddle chooses its program format when it is imported, so each save runs in a child process of this script (the
same file, given a form and a directory) with FLAGS_enable_pir_api=0 or with the flag unset.

The legacy save records each operator's creation call stack (`op_callstack`, with this script's and the venv's paths)
in model.pdmodel; the script deletes those attributes, so that the file does not depend on the machine, and checks that
Paddle Inference still computes the layer's values from the files. It also deletes `model.pdiparams.info` (parameter
names for re-loading in Python), which neither OpenVINO nor OVMS reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import FORMATS, INPUT_VALUES, write_expected

K = 6.0
"""This model's constant: y = K * x + 1."""
PIR_FLAGS = {"paddle": "0", "paddle_pir": None}
"""Each directory made, and the FLAGS_enable_pir_api its save runs with (None: unset, Paddle 3's default, PIR)."""
PADDLE_WRITES = {
    "paddle": ["model.pdiparams", "model.pdiparams.info", "model.pdmodel"],
    "paddle_pir": ["model.json", "model.pdiparams"],
}
"""The files paddle.jit.save writes for each form; anything else means Paddle changed, and the script stops."""


def main() -> None:
    """Save each form afresh, in a child process whose environment selects its program format."""
    for form, pir_flag in PIR_FLAGS.items():
        directory = FORMATS / form
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        environment = {key: value for key, value in os.environ.items() if key != "FLAGS_enable_pir_api"}
        if pir_flag is not None:
            environment["FLAGS_enable_pir_api"] = pir_flag
        subprocess.run([sys.executable, __file__, form, str(directory)], env=environment, check=True)


def export(form: str, directory: Path) -> None:
    """In the child process: save the layer to directory/model.* and write the form's expected.json."""
    import paddle

    pir = paddle.get_flags("FLAGS_enable_pir_api")["FLAGS_enable_pir_api"]
    if pir != (PIR_FLAGS[form] is None):
        raise SystemExit(f"{form}: paddle imported with FLAGS_enable_pir_api={pir}")
    layer = paddle.nn.Linear(4, 4)
    layer.weight.set_value(K * np.eye(4, dtype=np.float32))
    layer.bias.set_value(np.ones(4, dtype=np.float32))
    layer.eval()
    spec = [paddle.static.InputSpec([1, 4], "float32", name="x")]
    paddle.jit.save(layer, str(directory / "model"), input_spec=spec)
    framework = f"paddlepaddle {paddle.__version__}"
    files = sorted(path.name for path in directory.iterdir())
    if files != PADDLE_WRITES[form]:
        raise SystemExit(f"{form}: paddle.jit.save wrote {files}, not {PADDLE_WRITES[form]}")

    if form == "paddle_pir":
        record = {"format": form, "framework": framework, "files": files}
        record["openvino_read_error"] = openvino_read_errors(directory, files)
        (directory / "expected.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{form}: {json.dumps(record)}")
        return

    (directory / "model.pdiparams.info").unlink()
    strip_callstacks(directory / "model.pdmodel")
    output = layer(paddle.to_tensor(INPUT_VALUES)).numpy()
    if not np.allclose(output, K * INPUT_VALUES + 1):
        raise SystemExit(f"{form}: Paddle computes {output}, not {K} * x + 1")
    reloaded = paddle_inference(directory)
    if not np.allclose(reloaded, output, rtol=1e-6):
        raise SystemExit(f"{form}: Paddle Inference gives {reloaded} from the saved files, the layer {output}")
    write_expected(directory, form, framework, directory / "model.pdmodel", output)


def strip_callstacks(pdmodel: Path) -> None:
    """Delete the `op_callstack` attributes (the saving process's Python stack) from a legacy program."""
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(pdmodel.read_bytes())
    for block in program.blocks:
        for op in block.ops:
            kept = [attr for attr in op.attrs if attr.name != "op_callstack"]
            del op.attrs[:]
            op.attrs.extend(kept)
    data = program.SerializeToString()
    if b"op_callstack" in data or b".py" in data:
        raise SystemExit(f"{pdmodel}: call stacks left after stripping")
    pdmodel.write_bytes(data)


def paddle_inference(directory: Path) -> np.ndarray:
    """The output Paddle Inference computes on INPUT_VALUES from directory's model.pdmodel + model.pdiparams."""
    from paddle import inference

    config = inference.Config(str(directory / "model.pdmodel"), str(directory / "model.pdiparams"))
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    predictor.get_input_handle("x").copy_from_cpu(INPUT_VALUES)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def openvino_read_errors(directory: Path, files: list[str]) -> dict[str, str]:
    """For each file, the first meaningful line of what `Core().read_model` raises (its path cut to the file name);
    stops if OpenVINO reads one, since the directory is meant to show a format it does not."""
    import openvino as ov

    core = ov.Core()
    errors = {}
    for name in files:
        path = directory / name
        try:
            core.read_model(str(path))
        except Exception as exc:
            errors[name] = first_meaningful_line(exc).replace(str(path), name)
        else:
            raise SystemExit(f"{path}: OpenVINO {ov.get_version()} reads it; expected.json expects an error")
    return errors


def first_meaningful_line(exc: BaseException) -> str:
    """The first line of an OpenVINO error that is not a C++ source location ("Exception from ...", "Check ...")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(("Exception from ", "Check "))]
    return (meaningful or lines or [type(exc).__name__])[0]


if __name__ == "__main__":
    if len(sys.argv) == 3:
        export(sys.argv[1], Path(sys.argv[2]))
    else:
        main()
