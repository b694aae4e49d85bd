"""Make the TensorFlow test models of tests/models/formats: a SavedModel as `tf.saved_model.save` writes it
(`tf_saved_model`, K=2), a Keras 3 `model.export()` (`keras_export`, K=3), a frozen GraphDef (`tf_frozen/model.pb`,
K=4) and a TensorFlow Lite model (`tflite/model.tflite`, K=5). Each computes y = K * x + 1 on x FP32 [1, 4].

Run by hand, never in CI (TensorFlow is a 274 MB wheel), from the repository root:

    python3.11 -m venv /tmp/gen-tf
    /tmp/gen-tf/bin/pip install tensorflow==2.21.0 openvino==2026.4.1
    /tmp/gen-tf/bin/python scripts/format_models/tensorflow_models.py

It checks that OpenVINO reads each model and computes TensorFlow's values, and writes each one's expected.json.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).parent))
from common import FORMATS, INPUT_VALUES, write_expected

SPEC = tf.TensorSpec([1, 4], tf.float32, name="x")
FRAMEWORK = f"tensorflow {tf.__version__}"


class Affine(tf.Module):
    """y = k * x + 1, with k a variable so that the SavedModel has variables as real ones do."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = tf.Variable(k, dtype=tf.float32)

    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self.k * x + 1.0}


def _fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def saved_model() -> None:
    directory = FORMATS / "tf_saved_model"
    shutil.rmtree(directory, ignore_errors=True)
    module = Affine(2.0)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.__call__})
    output = module(tf.constant(INPUT_VALUES))["y"].numpy()
    write_expected(directory, "tf_saved_model", FRAMEWORK, directory, output)


def keras_export() -> None:
    import keras

    directory = FORMATS / "keras_export"
    shutil.rmtree(directory, ignore_errors=True)
    inputs = keras.Input(shape=(4,), batch_size=1, name="x")
    dense = keras.layers.Dense(4, name="y")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([3.0 * np.eye(4, dtype=np.float32), np.ones(4, dtype=np.float32)])
    model.export(str(directory), verbose=False)
    output = model(INPUT_VALUES).numpy()
    write_expected(directory, "keras_export", f"{FRAMEWORK}, keras {keras.__version__}", directory, output)


def frozen_graph() -> None:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    directory = _fresh(FORMATS / "tf_frozen")
    module = Affine(4.0)
    frozen = convert_variables_to_constants_v2(module.__call__.get_concrete_function())
    tf.io.write_graph(frozen.graph.as_graph_def(), str(directory), "model.pb", as_text=False)
    output = module(tf.constant(INPUT_VALUES))["y"].numpy()
    write_expected(directory, "tf_frozen", FRAMEWORK, directory / "model.pb", output)


def tflite() -> None:
    directory = _fresh(FORMATS / "tflite")
    module = Affine(5.0)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    (directory / "model.tflite").write_bytes(converter.convert())
    interpreter = tf.lite.Interpreter(model_path=str(directory / "model.tflite"))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], INPUT_VALUES)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    write_expected(directory, "tflite", FRAMEWORK, directory / "model.tflite", output)


if __name__ == "__main__":
    saved_model()
    keras_export()
    frozen_graph()
    tflite()
