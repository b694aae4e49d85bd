"""pyovms: an OpenVINO model server speaking the KServe v2 API, a drop-in replacement for OVMS.

`pyovms.serve(...)` runs a server inside a Python program (docs/python_api.md); `pyovms.Tensor` is the buffer type
of Python graph nodes. The rest of the API loads on first use, so `import pyovms` stays light.
"""

from typing import TYPE_CHECKING, Any

from . import no_telemetry  # noqa: F401 - first: before anything imports openvino
from .errors import ServingError, Status
from .tensor import Tensor
from .version import __version__

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
