"""Make the TensorFlow test models of tests/models/formats. Each computes y = K * x + 1 on one input `x`, FP32 [1, 4]:

- `tf_saved_model/` (K=2): a tf.Module saved by `tf.saved_model.save`, every file as TensorFlow writes it; its
  serving signature takes `x` and returns `{"y": ...}`, and K is a variable, so `variables/` holds it.
- `keras_export/` (K=3): Keras 3's `model.export()` of a functional model, Input(shape=(4,), batch_size=1, name="x")
  into one Dense(4) with kernel 3 * identity and bias 1. Keras makes the exported batch dimension dynamic whatever the
  Input says, so the export is given the input signature [1, 4] explicitly.
- `tf_frozen/model.pb` (K=4): a frozen GraphDef, `convert_variables_to_constants_v2` of a concrete function.
- `tflite/model.tflite` (K=5): `tf.lite.TFLiteConverter` of a concrete function.

Each directory gets an expected.json: the names OpenVINO reports for what OVMS hands to `read_model` (the SavedModel
directory, the .pb file, the .tflite file) and the values TensorFlow itself computes from the files on disk (the
reloaded SavedModel, the imported GraphDef, the TFLite interpreter). The script stops if OpenVINO's CPU results differ
from TensorFlow's, or if TensorFlow writes other files than those listed in TF_WRITES. An empty `assets/` directory
is written into both SavedModels and left there; git does not keep empty directories, and OpenVINO does not need it.

Run by hand, never in CI (CI never installs TensorFlow, a large wheel), from the repository root:

    /root/.pyenv/versions/3.11.7/bin/python -m venv /tmp/venv-tf
    /tmp/venv-tf/bin/pip install tensorflow==2.21.0 openvino==2026.4.1
    /tmp/venv-tf/bin/python scripts/format_models/tensorflow_models.py
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).parent))
from common import FORMATS, INPUT_VALUES, write_expected

SPEC = tf.TensorSpec([1, 4], tf.float32, name="x")
"""The one input of every model here."""
FRAMEWORK = f"tensorflow {tf.__version__}"
SAVED_MODEL_FILES = [
    "assets",
    "fingerprint.pb",
    "saved_model.pb",
    "variables",
    "variables/variables.data-00000-of-00001",
    "variables/variables.index",
]
TF_WRITES = {
    "tf_saved_model": SAVED_MODEL_FILES,
    "keras_export": SAVED_MODEL_FILES,
    "tf_frozen": ["model.pb"],
    "tflite": ["model.tflite"],
}
"""What each form's directory holds once saved (before expected.json); anything else means TensorFlow changed."""


class Affine(tf.Module):
    """y = k * x + 1, with k a variable, as a real model's weights are."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = tf.Variable(k, dtype=tf.float32, name="k")

    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        """The serving function: one output, named `y`."""
        return {"y": self.k * x + 1.0}


def fresh(form: str) -> Path:
    """The form's directory, emptied (a SavedModel save needs it absent, so it is removed, not created)."""
    directory = FORMATS / form
    shutil.rmtree(directory, ignore_errors=True)
    return directory


def check_written(form: str, directory: Path, k: float, output: np.ndarray) -> None:
    """Stop unless TensorFlow wrote exactly TF_WRITES[form] and computed k * x + 1."""
    written = sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))
    if written != TF_WRITES[form]:
        raise SystemExit(f"{form}: TensorFlow wrote {written}, expected {TF_WRITES[form]}")
    if not np.allclose(output, k * INPUT_VALUES + 1.0, rtol=1e-6):
        raise SystemExit(f"{form}: TensorFlow computes {output}, not {k} * x + 1")


def serving_default(directory: Path) -> Callable[..., dict[str, tf.Tensor]]:
    """The serving signature of the SavedModel in `directory`, loaded back from disk."""
    return tf.saved_model.load(str(directory)).signatures["serving_default"]


def saved_model(k: float = 2.0) -> None:
    """tf_saved_model/: `tf.saved_model.save` of an Affine module."""
    directory = fresh("tf_saved_model")
    module = Affine(k)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.__call__})
    output = serving_default(directory)(x=tf.constant(INPUT_VALUES))["y"].numpy()
    check_written("tf_saved_model", directory, k, output)
    write_expected(directory, "tf_saved_model", FRAMEWORK, directory, output)


def keras_export(k: float = 3.0) -> None:
    """keras_export/: Keras 3's `model.export()` of a functional model with one Dense layer."""
    import keras

    directory = fresh("keras_export")
    inputs = keras.Input(shape=(4,), batch_size=1, name="x")
    dense = keras.layers.Dense(4, name="dense")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([k * np.eye(4, dtype=np.float32), np.ones(4, dtype=np.float32)])
    model.export(str(directory), format="tf_saved_model", verbose=False, input_signature=[SPEC])
    (output,) = serving_default(directory)(x=tf.constant(INPUT_VALUES)).values()
    output = output.numpy()
    check_written("keras_export", directory, k, output)
    if not np.allclose(output, model(INPUT_VALUES), rtol=1e-6):
        raise SystemExit("keras_export: the export computes other values than the Keras model")
    write_expected(directory, "keras_export", f"{FRAMEWORK}, keras {keras.__version__}", directory, output)


def frozen_graph(k: float = 4.0) -> None:
    """tf_frozen/model.pb: a GraphDef with the variable folded into a constant."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    directory = fresh("tf_frozen")
    directory.mkdir(parents=True)
    module = Affine(k)  # held: the concrete function refers to its module weakly
    frozen = convert_variables_to_constants_v2(module.__call__.get_concrete_function())
    tf.io.write_graph(frozen.graph.as_graph_def(), str(directory), "model.pb", as_text=False)
    # TensorFlow's own values from the file: import the GraphDef and run it from its input to its output.
    graph_def = tf.compat.v1.GraphDef.FromString((directory / "model.pb").read_bytes())
    if any(node.op in ("VarHandleOp", "ReadVariableOp") for node in graph_def.node):
        raise SystemExit("tf_frozen: the graph still reads variables")
    imported = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    run = imported.prune(frozen.inputs[0].name, frozen.outputs[0].name)
    output = run(tf.constant(INPUT_VALUES)).numpy()
    check_written("tf_frozen", directory, k, output)
    write_expected(directory, "tf_frozen", FRAMEWORK, directory / "model.pb", output)


def tflite(k: float = 5.0) -> None:
    """tflite/model.tflite: the TFLite converter's flatbuffer of an Affine module's function."""
    directory = fresh("tflite")
    directory.mkdir(parents=True)
    module = Affine(k)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    (directory / "model.tflite").write_bytes(converter.convert())
    interpreter = tf.lite.Interpreter(model_path=str(directory / "model.tflite"))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], INPUT_VALUES)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    check_written("tflite", directory, k, output)
    write_expected(directory, "tflite", FRAMEWORK, directory / "model.tflite", output)


if __name__ == "__main__":
    saved_model()
    keras_export()
    frozen_graph()
    tflite()
