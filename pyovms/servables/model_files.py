"""Which file OpenVINO reads for a model version, found as OVMS finds it.

A version directory is searched format by format, in OVMS's order: OpenVINO IR (an `.xml` and a `.bin`), ONNX
(`.onnx`), PaddlePaddle (a `.pdmodel` and a `.pdiparams`, both required), TensorFlow (`.pb`: a SavedModel when the
directory holds `saved_model.pb`, else a frozen graph), then TensorFlow Lite (`.tflite`). The first format whose
files are all there wins, so a directory holding both `model.pb` and `model.tflite` serves the `.pb`.

A model path may also name one file. `.xml` needs its `.bin` (same stem); `.pdmodel` and `.pdiparams` both mean the
pair (same stem), and either missing is refused; `saved_model.pb` means its directory (a SavedModel); `.onnx`,
other `.pb` files and `.tflite` are read as they are. Other files are refused, as OVMS refuses them.

Where OVMS takes whichever file its directory listing gives first, pyovms takes the first by name, except that
`saved_model.pb` is preferred among `.pb` files: a SavedModel as TensorFlow writes it also holds `fingerprint.pb`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ServingError, Status

FORMATS = ((".xml", ".bin"), (".onnx",), (".pdmodel", ".pdiparams"), (".pb",), (".tflite",))
"""Each format's files, in the order a version directory is searched; the first file is the one OpenVINO reads."""
SAVED_MODEL = "saved_model.pb"
PADDLE_PIR_FILE = "model.json"
PADDLE_PIR_HINT = (
    "model.json is PaddlePaddle 3's PIR program, which OpenVINO does not read: save the model again with "
    "FLAGS_enable_pir_api=0 set, which writes model.pdmodel and model.pdiparams"
)


def find_model_file(path: Path) -> Path:
    """What OpenVINO reads for `path` (a version directory or a model file): a model file, or a SavedModel's
    directory. FILE_INVALID, with OVMS's message, when no format is complete there."""
    if path.is_file():
        return _single_file(path)
    files = sorted(p for p in path.iterdir() if p.is_file())
    for extensions in FORMATS:
        found = [_first_with(files, extension) for extension in extensions]
        if all(found):
            first = found[0]
            assert first is not None
            return path if first.name == SAVED_MODEL else first
    raise ServingError(Status.FILE_INVALID, _nothing_found(path, files))


def _first_with(files: list[Path], extension: str) -> Path | None:
    if extension == ".pb" and any(f.name == SAVED_MODEL for f in files):
        return next(f for f in files if f.name == SAVED_MODEL)
    return next((f for f in files if f.name.endswith(extension)), None)


def _single_file(path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".xml":
        if not path.with_suffix(".bin").is_file():
            raise ServingError(Status.FILE_INVALID, f"Missing .bin file for: {path}")
        return path
    if suffix in (".pdmodel", ".pdiparams"):
        model, parameters = path.with_suffix(".pdmodel"), path.with_suffix(".pdiparams")
        if not (model.is_file() and parameters.is_file()):
            raise ServingError(Status.FILE_INVALID, f"Missing .pdmodel or .pdiparams file for: {path}")
        return model
    if path.name == SAVED_MODEL:
        return path.parent
    if suffix in (".onnx", ".pb", ".tflite"):
        return path
    hint = f"; {PADDLE_PIR_HINT}" if path.name == PADDLE_PIR_FILE else ""
    raise ServingError(Status.FILE_INVALID, f"no valid model file found at path: {path}{hint}")


def _nothing_found(path: Path, files: list[Path]) -> str:
    """OVMS's message, with what is missing when part of a format is there."""
    message = f"no valid model file found in path: {path}"
    names = {f.name for f in files}
    suffixes = {f.suffix for f in files}
    if PADDLE_PIR_FILE in names and ".pdmodel" not in suffixes:
        return f"{message}; {PADDLE_PIR_HINT}"
    for extensions in FORMATS:
        present = [extension for extension in extensions if extension in suffixes]
        if present and len(present) < len(extensions):
            missing = [extension for extension in extensions if extension not in suffixes]
            return f"{message}; {' and '.join(present)} without {' and '.join(missing)}"
    return message
