"""Every model format OVMS serves, as OVMS finds it: TensorFlow SavedModel (as TensorFlow and Keras 3 write it),
frozen GraphDef, TensorFlow Lite, PaddlePaddle, OpenVINO IR and ONNX, in config.json and in single-model mode, in
directories and as single files, two formats in one directory, versions of different formats, and a tokenizer
converted with openvino-tokenizers (a string input); metadata and values over gRPC and REST.

The TensorFlow and PaddlePaddle models were made once by scripts/format_models/ (run by hand, each framework in its
own environment) and are committed under tests/models/formats/ with the names and values their framework gave
(`expected.json`); every numeric one computes `y = K * x + 1` with its own K, so the values tell which file served.
IR and ONNX models are built here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from pyovms.servables.openvino_core import first_line, is_missing_extension, tokenizers_library

from ..support import models
from ..support.server_process import ServerProcess, free_port, run_cli, serve_config

FORMATS = Path(__file__).parents[1] / "models" / "formats"
NUMERIC = ("tf_saved_model", "keras_export", "tf_frozen", "tflite", "paddle")
"""Committed models of the frameworks, each in a directory of its own."""
SINGLE_FILES = {
    "tf_saved_model": "saved_model.pb",
    "keras_export": "saved_model.pb",
    "tf_frozen": "model.pb",
    "tflite": "model.tflite",
    "paddle": "model.pdmodel",
    "paddle_pdiparams": "model.pdiparams",
}
"""The file a model path may name for each form (`paddle_pdiparams`: the Paddle pair named by its parameters)."""


def expected(form: str) -> dict:
    return json.loads((FORMATS / form.removesuffix("_pdiparams") / "expected.json").read_text())


def copy_version(form: str, version_dir: Path) -> Path:
    """The committed files of `form` as a version directory (its expected.json left out)."""
    shutil.copytree(FORMATS / form, version_dir, ignore=shutil.ignore_patterns("expected.json"), dirs_exist_ok=True)
    return version_dir


def _grpc_values(client: grpcclient.InferenceServerClient, model: str, form: str, version: str = "") -> np.ndarray:
    spec = expected(form)
    tensor = grpcclient.InferInput(spec["inputs"][0]["name"], [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array(spec["input_values"], dtype=np.float32))
    result = client.infer(model, [tensor], model_version=version)
    return result.as_numpy(spec["outputs"][0]["name"])


def _rest_values(client: httpclient.InferenceServerClient, model: str, form: str, version: str = "") -> np.ndarray:
    spec = expected(form)
    tensor = httpclient.InferInput(spec["inputs"][0]["name"], [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array(spec["input_values"], dtype=np.float32), binary_data=False)
    result = client.infer(model, [tensor], model_version=version)
    return result.as_numpy(spec["outputs"][0]["name"])


def _assert_serves(server: ServerProcess, model: str, form: str, version: str = "") -> None:
    """Metadata as OVMS reports it (OpenVINO's tensor names) and the framework's own values, over gRPC and REST."""
    spec = expected(form)
    want = np.array(spec["output_values"], dtype=np.float32)
    with grpcclient.InferenceServerClient(server.address) as client:
        metadata = client.get_model_metadata(model, version, as_json=True)
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in metadata["inputs"]] == [
            (t["name"], t["datatype"], t["shape"]) for t in spec["inputs"]
        ]
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in metadata["outputs"]] == [
            (t["name"], t["datatype"], t["shape"]) for t in spec["outputs"]
        ]
        assert metadata["platform"] == "OpenVINO"
        np.testing.assert_allclose(_grpc_values(client, model, form, version), want, rtol=1e-6)
    with httpclient.InferenceServerClient(server.rest_address) as client:
        np.testing.assert_allclose(_rest_values(client, model, form, version), want, rtol=1e-6)


def _index_reasons(server: ServerProcess) -> dict[tuple[str, str], str]:
    with grpcclient.InferenceServerClient(server.address) as client:
        index = client.get_model_repository_index(as_json=True)
    return {(m["name"], m.get("version", "")): m.get("reason", "") for m in index.get("models", [])}


# ---------------------------------------------------------------------------------------------- config.json


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """One model per form and single file, two-format directories, a model whose versions differ in format, and
    directories no format is complete in."""
    root = tmp_path_factory.mktemp("formats")
    for form in NUMERIC:
        copy_version(form, root / form / "1")
        copy_version(form, root / "files" / form)
    copy_version("paddle", root / "files" / "paddle_pdiparams")
    # Two formats in one version directory: the first in OVMS's order serves.
    copy_version("tflite", copy_version("tf_frozen", root / "pb_and_tflite" / "1"))
    copy_version("tflite", copy_version("paddle", root / "paddle_and_tflite" / "1"))
    copy_version("paddle", copy_version("tf_frozen", root / "paddle_and_pb" / "1"))
    models.build_dummy(root / "ir_and_tflite" / "1" / "model.xml")
    copy_version("tflite", root / "ir_and_tflite" / "1")
    models.build_onnx_dummy(root / "onnx_and_paddle" / "1" / "model.onnx")
    copy_version("paddle", root / "onnx_and_paddle" / "1")
    # mapping_config.json renames a TFLite model's tensors.
    mapped = copy_version("tflite", root / "tflite_mapped" / "1")
    (mapped / "mapping_config.json").write_text(
        json.dumps({"inputs": {"serving_default_x:0": "x"}, "outputs": {"StatefulPartitionedCall:0": "y"}})
    )
    # Versions of different formats.
    for version, form in enumerate(("tflite", "paddle", "tf_saved_model", "tf_frozen", "keras_export"), start=1):
        copy_version(form, root / "mixed" / str(version))
    # Incomplete: Paddle 3's default save, an IR without its weights, Paddle without its parameters.
    copy_version("paddle_pir", root / "paddle_pir" / "1")
    models.build_dummy(root / "xml_only" / "1" / "model.xml")
    next((root / "xml_only" / "1").glob("*.bin")).unlink()
    copy_version("paddle", root / "pdmodel_only" / "1")
    (root / "pdmodel_only" / "1" / "model.pdiparams").unlink()
    return root


@pytest.fixture(scope="module")
def formats_server(repository, tmp_path_factory):
    names = [
        *NUMERIC, "pb_and_tflite", "paddle_and_tflite", "paddle_and_pb", "ir_and_tflite", "onnx_and_paddle", "mixed",
        "paddle_pir", "xml_only", "pdmodel_only", "tflite_mapped",
    ]  # fmt: skip
    model_list = [{"config": {"name": name, "base_path": str(repository / name)}} for name in names]
    model_list[names.index("mixed")]["config"]["model_version_policy"] = {"all": {}}
    model_list += [
        {"config": {"name": f"file_{form}", "base_path": str(repository / "files" / form / file)}}
        for form, file in SINGLE_FILES.items()
    ]
    server = serve_config(repository, {"model_config_list": model_list})
    yield server
    server.stop()


@pytest.mark.parametrize("form", NUMERIC)
def test_each_format_in_config(formats_server, form):
    _assert_serves(formats_server, form, form)


@pytest.mark.parametrize("form", SINGLE_FILES)
def test_each_single_file_form_in_config(formats_server, form):
    _assert_serves(formats_server, f"file_{form}", form)


@pytest.mark.parametrize(
    ("model", "served"),
    [
        ("pb_and_tflite", "tf_frozen"),
        ("paddle_and_tflite", "paddle"),
        ("paddle_and_pb", "paddle"),
    ],
)
def test_two_formats_in_one_directory_serve_the_first_in_ovms_order(formats_server, model, served):
    _assert_serves(formats_server, model, served)


def test_ir_before_tflite_and_onnx_before_paddle(formats_server):
    """The IR and ONNX dummies (`b` FP32 [1, 10] -> `a` = b + 1) win over the committed models beside them."""
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    with grpcclient.InferenceServerClient(formats_server.address) as client:
        for model in ("ir_and_tflite", "onnx_and_paddle"):
            metadata = client.get_model_metadata(model, as_json=True)
            assert [t["name"] for t in metadata["inputs"]] == ["b"], model
            tensor = grpcclient.InferInput("b", [1, 10], "FP32")
            tensor.set_data_from_numpy(x)
            np.testing.assert_array_equal(client.infer(model, [tensor]).as_numpy("a"), x + 1)


def test_mapping_config_renames_a_tflite_models_tensors(formats_server):
    x = np.array(expected("tflite")["input_values"], dtype=np.float32)
    with grpcclient.InferenceServerClient(formats_server.address) as client:
        metadata = client.get_model_metadata("tflite_mapped", as_json=True)
        assert ([t["name"] for t in metadata["inputs"]], [t["name"] for t in metadata["outputs"]]) == (["x"], ["y"])
        tensor = grpcclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("tflite_mapped", [tensor]).as_numpy("y"), 5 * x + 1)


@pytest.mark.parametrize(
    ("version", "form"), list(enumerate(("tflite", "paddle", "tf_saved_model", "tf_frozen", "keras_export"), start=1))
)
def test_versions_of_different_formats(formats_server, version, form):
    _assert_serves(formats_server, "mixed", form, str(version))


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            "paddle_pir",
            "File not found or cannot open - no valid model file found in path: paddle_pir/1; model.json is "
            "PaddlePaddle 3's PIR program, which OpenVINO does not read: save the model again with "
            "FLAGS_enable_pir_api=0 set, which writes model.pdmodel and model.pdiparams",
        ),
        (
            "xml_only",
            "File not found or cannot open - no valid model file found in path: xml_only/1; .xml without .bin",
        ),
        (
            "pdmodel_only",
            "File not found or cannot open - no valid model file found in path: pdmodel_only/1; .pdmodel without "
            ".pdiparams",
        ),
    ],
)
def test_incomplete_formats_fail_to_load_saying_what_is_missing(formats_server, model, reason):
    assert _index_reasons(formats_server)[(model, "1")] == reason
    with grpcclient.InferenceServerClient(formats_server.address) as client:
        assert client.is_model_ready(model, "1") is False
        assert client.is_model_ready(NUMERIC[0]) is True


# ---------------------------------------------------------------------------------------------- single-model mode


def _single_model(tmp_path: Path, model_path: Path, *args: str) -> ServerProcess:
    return ServerProcess(["--model_name", "m", "--model_path", str(model_path), *args], tmp_path / "log")


@pytest.mark.parametrize("form", NUMERIC)
def test_single_model_mode_directory(tmp_path, form):
    copy_version(form, tmp_path / "model" / "1")
    server = _single_model(tmp_path, tmp_path / "model")
    try:
        _assert_serves(server, "m", form)
    finally:
        server.stop()


@pytest.mark.parametrize("form", SINGLE_FILES)
def test_single_model_mode_file(tmp_path, form):
    """`--model_path .../1/saved_model.pb` serves the SavedModel; `.../model.pdiparams` the Paddle pair."""
    version = copy_version(form.removesuffix("_pdiparams"), tmp_path / "model" / "1")
    server = _single_model(tmp_path, version / SINGLE_FILES[form])
    try:
        _assert_serves(server, "m", form)
    finally:
        server.stop()


def test_single_model_mode_refuses_half_a_paddle_pair(tmp_path):
    version = copy_version("paddle", tmp_path / "model" / "1")
    (version / "model.pdmodel").unlink()
    server = _single_model(tmp_path, version / "model.pdiparams")
    try:
        with grpcclient.InferenceServerClient(server.address) as client:
            assert client.is_model_ready("m", "1") is False
        assert _index_reasons(server)[("m", "1")] == (
            "File not found or cannot open - Missing .pdmodel or .pdiparams file for: model.pdiparams"
        )
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- --cpu_extension


def test_cpu_extension_that_is_not_a_library_stops_the_server(tmp_path):
    not_a_library = tmp_path / "extension.so"
    not_a_library.write_text("not a library\n")
    copy_version("tflite", tmp_path / "model" / "1")
    result = run_cli(
        "--model_name", "m", "--model_path", str(tmp_path / "model"), "--port", str(free_port()),
        "--grpc_bind_address", "127.0.0.1", "--cpu_extension", str(not_a_library),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Custom CPU extension loading has failed! Reason: Cannot add extension." in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- openvino-tokenizers


def test_tokenizer_with_a_string_input_over_grpc_and_rest(tmp_path):
    """A tokenizer converted with openvino-tokenizers loads (its extension is added to the Core, as OVMS does) and
    turns strings into the Hugging Face tokenizer's own ids."""
    spec = expected("tokenizer")
    texts = np.array([text.encode() for text in spec["input_values"]], dtype=object)
    copy_version("tokenizer", tmp_path / "tokenizer" / "1")
    server = _single_model(tmp_path, tmp_path / "tokenizer")
    try:
        with grpcclient.InferenceServerClient(server.address) as client:
            metadata = client.get_model_metadata("m", as_json=True)
            for got, want in ((metadata["inputs"], spec["inputs"]), (metadata["outputs"], spec["outputs"])):
                assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in got] == sorted(
                    (t["name"], t["datatype"], t["shape"]) for t in want
                )  # sorted by name, as OVMS lists them
            tensor = grpcclient.InferInput(spec["inputs"][0]["name"], [len(texts)], "BYTES")
            tensor.set_data_from_numpy(texts)
            result = client.infer("m", [tensor])
            for name, values in spec["output_values"].items():
                np.testing.assert_array_equal(result.as_numpy(name), np.array(values, dtype=np.int64))
        with httpclient.InferenceServerClient(server.rest_address) as client:
            tensor = httpclient.InferInput(spec["inputs"][0]["name"], [len(texts)], "BYTES")
            tensor.set_data_from_numpy(texts, binary_data=False)
            result = client.infer("m", [tensor])
            for name, values in spec["output_values"].items():
                np.testing.assert_array_equal(result.as_numpy(name), np.array(values, dtype=np.int64))
    finally:
        server.stop()


def test_cpu_extension_loads_a_real_extension_library(tmp_path):
    """`--cpu_extension` naming openvino-tokenizers' library: added to the Core (again: adding it twice is fine)."""
    library = tokenizers_library()
    assert library is not None, "the test extras install openvino-tokenizers"
    copy_version("tokenizer", tmp_path / "tokenizer" / "1")
    server = _single_model(tmp_path, tmp_path / "tokenizer", "--cpu_extension", str(library))
    try:
        with grpcclient.InferenceServerClient(server.address) as client:
            assert client.is_model_ready("m") is True
        assert "Extension added." in server.log()
    finally:
        server.stop()


def test_openvino_without_the_tokenizers_extension_refuses_the_tokenizer():
    """What pyovms recognizes to tell a user to install `pyovms[tokenizers]`: a plain Core's refusal."""
    with pytest.raises(RuntimeError) as info:
        ov.Core().read_model(str(FORMATS / "tokenizer" / "openvino_tokenizer.xml"))
    assert is_missing_extension(first_line(info.value)), str(info.value)


def test_without_openvino_tokenizers_the_load_error_says_what_to_install(tmp_path):
    """A server whose environment lacks the package's library (an empty `openvino_tokenizers` first on the path
    stands in for an environment without `pyovms[tokenizers]`) refuses the tokenizer saying what to install."""
    shadow = tmp_path / "shadow" / "openvino_tokenizers"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    copy_version("tokenizer", tmp_path / "tokenizer" / "1")
    server = ServerProcess(
        ["--model_name", "m", "--model_path", str(tmp_path / "tokenizer")],
        tmp_path / "log",
        env={"PYTHONPATH": str(tmp_path / "shadow")},
    )
    try:
        reason = _index_reasons(server)[("m", "1")]
        assert reason.startswith(
            "Error while loading a network - tokenizer/1/openvino_tokenizer.xml: Cannot create "
        ), reason
        assert reason.endswith(
            "unsupported opset: extension; the model uses operations of openvino-tokenizers, which is not installed "
            "here: pip install 'pyovms[tokenizers]'"
        ), reason
        assert "openvino-tokenizers is not installed: models using its operations will not load" in server.log()
    finally:
        server.stop()
