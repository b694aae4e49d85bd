"""pyovms: an OpenVINO model server speaking the KServe v2 API, a drop-in replacement for OVMS.

`pyovms.serve(...)` runs a server inside a Python program (docs/python_api.md); `pyovms.Tensor` is the buffer type
of Python graph nodes. The rest of the API loads on first use, so `import pyovms` stays light.
"""

import sys
from typing import TYPE_CHECKING, Any

# OpenVINO's usage telemetry is turned off in pyovms's process, before anything imports openvino. Importing `openvino`
# imports its model converter, which sends a usage event to Google Analytics through the `openvino_telemetry` package
# whenever that package is installed (it is one of openvino's dependencies). A model server reports its starts to
# nobody: marking the package as not importable makes OpenVINO use its own no-op stand-in. A program that imported
# openvino before pyovms has sent its event already.
sys.modules.setdefault("openvino_telemetry", None)

from .errors import ServingError, Status  # noqa: E402 - after the telemetry switch above
from .tensors.node_tensor import Tensor  # noqa: E402
from .version import __version__  # noqa: E402

if TYPE_CHECKING:
    from .in_process import InProcessServer, serve
    from .server import StartupError
    from .settings import Settings

_LAZY = {
    "serve": "in_process",
    "InProcessServer": "in_process",
    "StartupError": "server",
    "Settings": "settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyovms' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)


__all__ = ["InProcessServer", "ServingError", "Settings", "StartupError", "Status", "Tensor", "__version__", "serve"]
