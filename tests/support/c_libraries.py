"""The C and C++ custom node libraries of the tests (sources in tests/support/c_sources/), compiled with the system
compiler (`cc`, `c++`) into a directory of the test's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "c_sources"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "custom_nodes"
"""The example library, and `custom_node_api.h`, the interface's declarations every library includes."""
C_LIBRARIES = ("add_sub", "demultiplexer", "gather_max", "faulty", "missing_symbol")
CPP_LIBRARIES = ("scale",)


def compiler(cpp: bool = False) -> str:
    """The system compiler's path; fails the test when there is none (CI installs it)."""
    name = os.environ.get("CXX" if cpp else "CC", "c++" if cpp else "cc")
    path = shutil.which(name)
    assert path, (
        f"no {name} on PATH: the C custom node tests need the system compiler (apt-get install build-essential)"
    )
    return path


def build_library(name: str, directory: Path, *defines: str, sources: Path = SOURCES) -> Path:
    """Compile <sources>/<name>.c (or .cpp) into directory/lib<name>.so; its path."""
    cpp = name in CPP_LIBRARIES
    source = sources / f"{name}{'.cpp' if cpp else '.c'}"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"lib{name}.so"
    command = [compiler(cpp), "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]
    command += ["-pthread", "-I", str(EXAMPLES), *(f"-D{define}" for define in defines), "-o", str(target), str(source)]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    assert built.returncode == 0, f"{' '.join(command)}\n{built.stderr}"
    return target


def build_all(directory: Path) -> dict[str, Path]:
    """Every test library, by name."""
    return {name: build_library(name, directory) for name in (*C_LIBRARIES, *CPP_LIBRARIES)}
