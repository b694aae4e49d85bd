"""Regenerate pyovms's protobuf and gRPC Python code from proto/*.proto.

Usage: python scripts/generate_protos.py [--out DIR]

Needs grpcio-tools (in the `dev` and `test` extras). Each proto file has a target package directory in `TARGETS`:
- proto/grpc_predict_v2.proto -> pyovms/generated (messages, stubs and gRPC service code);
- proto/mediapipe_graph.proto -> pyovms/generated (messages only: graph.pbtxt files are read with it).
`--out DIR` writes the same layout under DIR instead of pyovms/ (DIR/generated);
tests/test_generated_code.py does that in a temporary directory and fails when the committed files differ.

The edits made to protoc's output are all mechanical:
- the gRPC module imports the message module relatively, so it works inside the package;
- the messages are registered in a private descriptor pool instead of protobuf's default pool, so a process may
  import pyovms and another user of the same proto package (tritonclient for `inference`, the real `mediapipe`
  package for `mediapipe`) without a duplicate-symbol error. The well-known types a file imports
  (google/protobuf/any.proto) are added to that pool first, so Any fields and their text-format expansion work;
- targets outside ruff's extend-exclude get a `# ruff: noqa` / `# fmt: off` header so the linters skip them.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "pyovms"


@dataclass(frozen=True)
class Target:
    """Where one proto file's modules go (relative to the package root) and what protoc makes for it."""

    directory: Path
    grpc: bool


TARGETS: dict[str, Target] = {
    "grpc_predict_v2.proto": Target(Path("generated"), grpc=True),
    "mediapipe_graph.proto": Target(Path("generated"), grpc=False),
}

_WKT_IMPORT = re.compile(r"^from google\.protobuf import \w+_pb2 as (\w+)$", re.MULTILINE)


def generate(out_root: Path) -> list[Path]:
    """Run protoc on every .proto file and write the edited modules into its target directory under out_root."""
    protos = sorted(p.name for p in PROTO_DIR.glob("*.proto"))
    missing = [name for name in protos if name not in TARGETS]
    if missing:
        raise SystemExit(f"no target directory for {', '.join(missing)}: add it to TARGETS in {Path(__file__).name}")
    written: list[Path] = []
    for name in protos:
        target = TARGETS[name]
        out_dir = out_root / target.directory
        out_dir.mkdir(parents=True, exist_ok=True)
        written += _generate_one(PROTO_DIR / name, target, out_dir)
    return written


def _generate_one(proto: Path, target: Target, out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # imported here so that --help works without grpcio-tools

    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            *([f"--grpc_python_out={tmp}"] if target.grpc else []),
            str(proto),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto.name}")
        written = []
        for produced in sorted(Path(tmp).iterdir()):
            text = _edit(produced.name, produced.read_text())
            path = out_dir / produced.name
            path.write_text(text)
            written.append(path)
    return written


def _edit(name: str, text: str) -> str:
    if name.endswith("_pb2_grpc.py"):
        text = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", text, flags=re.MULTILINE)
    if name.endswith("_pb2.py"):
        dependencies = "".join(
            f"POOL.AddSerializedFile({alias}.DESCRIPTOR.serialized_pb)\n" for alias in _WKT_IMPORT.findall(text)
        )
        if re.search(r"^import \w+_pb2 as", text, flags=re.MULTILINE):
            raise SystemExit(f"{name}: imports of pyovms's own proto files are not supported by the private pool edit")
        original = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
        if original not in text:
            raise SystemExit(f"{name}: protoc's output changed; update _edit in {Path(__file__).name}")
        text = text.replace(
            original, f"POOL = _descriptor_pool.DescriptorPool()\n{dependencies}DESCRIPTOR = POOL.AddSerializedFile("
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="package root to write under (default: pyovms/)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
