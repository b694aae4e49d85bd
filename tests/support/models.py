"""Test models, built locally with OpenVINO's Python API and onnx.helper (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pyovms.repository.demo import build_dummy

__all__ = ["build_dummy"]

OV_TYPES = {
    "BOOL": ov.Type.boolean,
    "UINT8": ov.Type.u8,
    "UINT16": ov.Type.u16,
    "UINT32": ov.Type.u32,
    "UINT64": ov.Type.u64,
    "INT8": ov.Type.i8,
    "INT16": ov.Type.i16,
    "INT32": ov.Type.i32,
    "INT64": ov.Type.i64,
    "FP16": ov.Type.f16,
    "FP32": ov.Type.f32,
    "FP64": ov.Type.f64,
    "BYTES": ov.Type.string,
}


def _save(model: ov.Model, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def _named(node: ov.Node, name: str) -> ov.Output:
    output = node.output(0)
    output.get_tensor().set_names({name})
    return output


def write_mapping(version_dir: Path, inputs: dict[str, str], outputs: dict[str, str]) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "mapping_config.json").write_text(json.dumps({"inputs": inputs, "outputs": outputs}))


def build_passthrough(
    version_dir: Path, ov_type: ov.Type, shape: list[int], in_name: str = "in", out_name: str = "out"
):
    """Parameter straight to Result: keeps every value (OpenVINO's CPU plugin computes 64-bit types in 32 bits).

    The input and output share one tensor and so its names; mapping_config.json gives them distinct names.
    """
    x = ops.parameter(shape, ov_type, name="x")
    x.output(0).get_tensor().set_names({"x"})
    result = ops.result(x.output(0))
    model = ov.Model([result], [x], "passthrough")
    model.outputs[0].get_tensor().add_names({"y"})
    _save(model, version_dir / "model.xml")
    write_mapping(version_dir, {"x": in_name, "y": in_name}, {"y": out_name})


def build_add_constant(path: Path, shape: list, constant: float, in_name: str = "x", out_name: str = "y") -> Path:
    """y = x + constant, FP32."""
    x = ops.parameter(shape, ov.Type.f32, name=in_name)
    y = _named(ops.add(x, ops.constant(np.float32(constant))), out_name)
    return _save(ov.Model([y], [x], "add_constant"), path)


def build_add_two(path: Path) -> Path:
    """sum = input1 + input2, FP32 [1,10]."""
    a = ops.parameter([1, 10], ov.Type.f32, name="input1")
    b = ops.parameter([1, 10], ov.Type.f32, name="input2")
    return _save(ov.Model([_named(ops.add(a, b), "sum")], [a, b], "add_two"), path)


def build_simple(path: Path) -> Path:
    """Triton's example model `simple`: INPUT0, INPUT1 INT32 [1,16]; OUTPUT0 = their sum, OUTPUT1 = their difference."""
    a = ops.parameter([1, 16], ov.Type.i32, name="INPUT0")
    b = ops.parameter([1, 16], ov.Type.i32, name="INPUT1")
    outputs = [_named(ops.add(a, b), "OUTPUT0"), _named(ops.subtract(a, b), "OUTPUT1")]
    return _save(ov.Model(outputs, [a, b], "simple"), path)


def build_two_outputs(path: Path) -> Path:
    """From x FP32 [1,4]: `plus_one` = x + 1, `times_two` = x * 2, `negated` = -x."""
    x = ops.parameter([1, 4], ov.Type.f32, name="x")
    plus = _named(ops.add(x, ops.constant(np.float32(1))), "plus_one")
    times = _named(ops.multiply(x, ops.constant(np.float32(2))), "times_two")
    negated = _named(ops.negative(x), "negated")
    return _save(ov.Model([times, plus, negated], [x], "two_outputs"), path)


def build_relu(path: Path, shape: list, in_name: str = "x", out_name: str = "y") -> Path:
    x = ops.parameter(shape, ov.Type.f32, name=in_name)
    return _save(ov.Model([_named(ops.relu(x), out_name)], [x], "relu"), path)


def build_bf16(path: Path) -> Path:
    """A BF16 input (KServe cannot carry it: metadata says INVALID)."""
    x = ops.parameter([1, 2], ov.Type.bf16, name="x")
    return _save(ov.Model([_named(ops.convert(x, ov.Type.f32), "y")], [x], "bf16"), path)


def build_runtime_failure(path: Path) -> Path:
    """Reshapes x [-1] to [2,-1]: fails inside OpenVINO for an odd number of elements."""
    x = ops.parameter([-1], ov.Type.f32, name="x")
    y = _named(ops.reshape(x, ops.constant(np.array([2, -1], dtype=np.int64)), False), "y")
    return _save(ov.Model([y], [x], "odd_fails"), path)


def build_string_2d(version_dir: Path, shape: list[int]) -> None:
    """A U8 [N, W] input `s` passed through to output `out_string` (read back as strings)."""
    build_passthrough(version_dir, ov.Type.u8, shape, in_name="s", out_name="out_string")


def build_onnx_dummy(path: Path) -> Path:
    """ONNX: a = b + 1 with b FP32 [1,10]."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["b", "one"], ["a"])],
        "dummy",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 10])],
        [one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_broken(version_dir: Path) -> None:
    """A version directory whose model file OpenVINO cannot read."""
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.xml").write_text("<net>this is not an IR</net>")
    (version_dir / "model.bin").write_bytes(b"")


def build_slow_to_compile(path: Path, layers: int = 1500) -> Path:
    """x FP32 [1,64] through `layers` matmul+relu pairs: compiling takes seconds (for start-up ordering tests)."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 64], ov.Type.f32, name="x")
    y = x
    for _ in range(layers):
        weights = ops.constant((rng.random((64, 64), dtype=np.float32) - 0.5) * 0.1)
        y = ops.relu(ops.matmul(y, weights, False, False))
    return _save(ov.Model([_named(y, "y")], [x], "slow"), path)


def build_to_fp32(path: Path, shape: list, ov_type: ov.Type, in_name: str = "x", out_name: str = "y") -> Path:
    """y = x converted to FP32: shows the values an input of `ov_type` received."""
    x = ops.parameter(shape, ov_type, name=in_name)
    return _save(ov.Model([_named(ops.convert(x, ov.Type.f32), out_name)], [x], "to_fp32"), path)


def build_times_two(path: Path, shape: list) -> Path:
    """y = 2 x, FP32."""
    x = ops.parameter(shape, ov.Type.f32, name="x")
    return _save(ov.Model([_named(ops.multiply(x, ops.constant(np.float32(2))), "y")], [x], "times_two"), path)


def build_slow_to_infer(path: Path, layers: int = 12, width: int = 1024) -> Path:
    """x FP32 [-1, width] through `layers` matmul+relu pairs: a batch of a few hundred rows takes a large fraction
    of a second (for requests still in flight when the server is told to stop)."""
    rng = np.random.default_rng(0)
    x = ops.parameter([-1, width], ov.Type.f32, name="x")
    y = x
    for _ in range(layers):
        weights = ops.constant((rng.random((width, width), dtype=np.float32) - 0.5) * 0.05)
        y = ops.relu(ops.matmul(y, weights, False, False))
    return _save(ov.Model([_named(y, "y")], [x], "slow_infer"), path)
