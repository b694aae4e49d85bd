"""Which kind of custom node library a `base_path` is (a compiled C library or Python), and loading it."""

from __future__ import annotations

from .interface import Library, LibraryConfig, named_like_a_library
from .python_library import PythonLibrary

_BINARY_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ")
"""The first bytes of ELF, Mach-O (64, 32, universal) and PE files."""


def is_shared_library(path: str) -> bool:
    """Whether `path` is to be loaded as a C library: a compiled binary, or named like one."""
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError:
        head = b""
    return head.startswith(_BINARY_MAGIC) or named_like_a_library(path)


def load_library(config: LibraryConfig, previous: Library | None = None) -> Library:
    """Load the library `config` names, of the kind its file shows; `previous` is the one it replaces (a reload).
    Raises ServingError with OVMS's status when it cannot be loaded."""
    if is_shared_library(config.base_path):
        from .c_library import CLibrary  # ctypes and the ABI only when a C library is configured

        return CLibrary.load(config, previous)
    return PythonLibrary.load(config)
