"""pyovms: an OpenVINO model server speaking the KServe v2 API, a drop-in replacement for OVMS."""

from importlib.metadata import PackageNotFoundError, version

from .tensor import Tensor

try:
    __version__ = version("pyovms")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["Tensor", "__version__"]
