"""The OpenVINO Core models are read and compiled with, extended as OVMS extends its own.

First the library `--cpu_extension` names: when it does not load, the server does not start. Then the operations of
openvino-tokenizers (tokenizers converted for OpenVINO, with string inputs) when that package is installed
(`pip install 'pyovms[tokenizers]'`): OVMS adds them to every Core it creates and only warns when it cannot. The
package's library is found without importing the package, whose import patches every later `openvino.Core`.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import openvino as ov

log = logging.getLogger("pyovms.openvino_core")

TOKENIZERS_PACKAGE = "openvino_tokenizers"
TOKENIZERS_MISSING_HINT = (
    "the model uses operations of openvino-tokenizers, which is not installed here: pip install 'pyovms[tokenizers]'"
)


class ExtensionError(Exception):
    """The `--cpu_extension` library did not load (OVMS's message)."""


def make_core(cpu_extension: str | None = None) -> ov.Core:
    """A Core with the `cpu_extension` library (ExtensionError when it fails to load) and, when installed,
    openvino-tokenizers' operations."""
    core = ov.Core()
    if cpu_extension:
        log.info("Loading custom CPU extension from %s", cpu_extension)
        try:
            core.add_extension(cpu_extension)
        except Exception as exc:
            raise ExtensionError(f"Custom CPU extension loading has failed! Reason: {first_line(exc)}") from exc
        log.info("Extension added.")
    library = tokenizers_library()
    if library is None:
        log.info("openvino-tokenizers is not installed: models using its operations will not load")
        return core
    try:
        core.add_extension(str(library))
    except Exception as exc:  # e.g. a build for another OpenVINO version
        log.warning("%s extension was not enabled: %s", library.name, first_line(exc))
    return core


def tokenizers_library() -> Path | None:
    """The openvino-tokenizers extension library of the installed package, or None."""
    spec = importlib.util.find_spec(TOKENIZERS_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    name = {"win32": "openvino_tokenizers.dll", "darwin": "libopenvino_tokenizers.dylib"}.get(
        sys.platform, "libopenvino_tokenizers.so"
    )
    library = Path(spec.origin).parent / "lib" / name
    return library if library.is_file() else None


def is_missing_extension(message: str) -> bool:
    """Whether OpenVINO refused a model for operations of an extension it does not have."""
    return "unsupported opset: extension" in message


def first_line(exc: BaseException) -> str:
    """OpenVINO messages carry C++ source locations first; keep the meaningful last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith("Exception from ") and not line.startswith("Check ")]
    return (meaningful or lines or [type(exc).__name__])[-1]
