"""Which file a version directory or a model path serves: OVMS's format order, companion files and messages
(files made on disk here; tests/e2e/test_model_formats.py serves real models of every format)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyovms.errors import ServingError, Status
from pyovms.servables.model_files import find_model_file


def _files(directory: Path, *names: str) -> Path:
    for name in names:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(b"")
    return directory


@pytest.mark.parametrize(
    ("names", "served"),
    [
        (["model.xml", "model.bin", "model.onnx"], "model.xml"),
        (["model.onnx", "model.pdmodel", "model.pdiparams"], "model.onnx"),
        (["model.pdmodel", "model.pdiparams", "model.pb"], "model.pdmodel"),
        (["model.pdmodel", "model.pdiparams", "model.tflite"], "model.pdmodel"),
        (["model.pb", "model.tflite"], "model.pb"),
        (["model.tflite"], "model.tflite"),
        # incomplete formats are skipped: an IR without .bin, Paddle without .pdiparams
        (["model.xml", "model.onnx"], "model.onnx"),
        (["model.pdmodel", "model.tflite"], "model.tflite"),
        # a SavedModel as TensorFlow writes it: the directory, whatever other .pb files it holds
        (["fingerprint.pb", "saved_model.pb", "variables/variables.index"], "."),
        (["saved_model.pb", "model.tflite"], "."),
    ],
)
def test_directory_formats_in_ovms_order(tmp_path, names, served):
    assert find_model_file(_files(tmp_path, *names)) == (tmp_path if served == "." else tmp_path / served)


@pytest.mark.parametrize(
    ("names", "given", "served"),
    [
        (["model.xml", "model.bin"], "model.xml", "model.xml"),
        (["m.pdmodel", "m.pdiparams"], "m.pdiparams", "m.pdmodel"),
        (["m.pdmodel", "m.pdiparams"], "m.pdmodel", "m.pdmodel"),
        (["saved_model.pb", "fingerprint.pb"], "saved_model.pb", "."),
        (["frozen.pb"], "frozen.pb", "frozen.pb"),
        (["model.onnx"], "model.onnx", "model.onnx"),
        (["model.tflite"], "model.tflite", "model.tflite"),
    ],
)
def test_single_file_forms(tmp_path, names, given, served):
    _files(tmp_path, *names)
    assert find_model_file(tmp_path / given) == (tmp_path if served == "." else tmp_path / served)


@pytest.mark.parametrize(
    ("names", "given", "details"),
    [
        (["model.xml"], "model.xml", "Missing .bin file for: {path}"),
        (["m.pdmodel"], "m.pdmodel", "Missing .pdmodel or .pdiparams file for: {path}"),
        (["m.pdiparams"], "m.pdiparams", "Missing .pdmodel or .pdiparams file for: {path}"),
        (["m.pdmodel", "n.pdiparams"], "m.pdmodel", "Missing .pdmodel or .pdiparams file for: {path}"),
        (["notes.txt"], "notes.txt", "no valid model file found at path: {path}"),
    ],
)
def test_single_file_refusals(tmp_path, names, given, details):
    _files(tmp_path, *names)
    with pytest.raises(ServingError) as info:
        find_model_file(tmp_path / given)
    assert info.value.status is Status.FILE_INVALID
    assert info.value.details == details.format(path=tmp_path / given)


@pytest.mark.parametrize(
    ("names", "suffix"),
    [
        ([], ""),
        (["notes.txt"], ""),
        (["model.xml"], "; .xml without .bin"),
        (["model.pdiparams"], "; .pdiparams without .pdmodel"),
        (["model.json", "model.pdiparams"], "; model.json is PaddlePaddle 3's PIR program"),
    ],
)
def test_directory_without_a_complete_format(tmp_path, names, suffix):
    with pytest.raises(ServingError) as info:
        find_model_file(_files(tmp_path, *names))
    assert info.value.status is Status.FILE_INVALID
    assert info.value.details.startswith(f"no valid model file found in path: {tmp_path}{suffix}")


def test_paddle_pir_file_named_alone(tmp_path):
    _files(tmp_path, "model.json", "model.pdiparams")
    with pytest.raises(ServingError) as info:
        find_model_file(tmp_path / "model.json")
    assert "FLAGS_enable_pir_api=0" in info.value.details
