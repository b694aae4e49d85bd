"""Shared fixtures: one repository of test models and one real pyovms server for the session; and the run's check
that no test process opens a connection outside the machine (support/network_guard.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from .support import models
from .support.network_guard import NetworkGuard
from .support.server_process import ServerProcess

_guard = NetworkGuard()


def pytest_sessionstart(session: pytest.Session) -> None:
    _guard.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process of it had a connection outside 127.0.0.1 (and ::1) open."""
    seen = _guard.stop()
    if not seen:
        return
    lines = [f"  {o.table} to {o.remote} from {o.command}" for o in sorted(seen, key=lambda o: (o.remote, o.command))]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "Connections outside the machine were opened during the run:\n" + "\n".join(lines), red=True
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


NUMERIC_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
]  # fmt: skip


def build_repository(root: Path) -> Path:
    """Write every test model and a config.json serving them; return the config path."""
    entries: list[dict] = []

    def serve(name: str, base_path: str, **options) -> None:
        entries.append({"config": {"name": name, "base_path": base_path, **options}})

    models.build_dummy(root / "dummy" / "1" / "model.xml")
    serve("dummy", "dummy")
    models.build_onnx_dummy(root / "dummy_onnx" / "1" / "model.onnx")
    serve("dummy_onnx", "dummy_onnx")
    models.build_onnx_dummy(root / "single_file" / "dummy.onnx")
    serve("dummy_onnx_file", "single_file/dummy.onnx")
    for datatype in NUMERIC_DATATYPES:
        models.build_passthrough(root / f"passthrough_{datatype}" / "1", models.OV_TYPES[datatype], [-1, -1])
        serve(f"passthrough_{datatype}", f"passthrough_{datatype}")
    models.build_passthrough(root / "passthrough_fixed" / "1", models.OV_TYPES["FP32"], [2, 3])
    serve("passthrough_fixed", "passthrough_fixed")
    models.build_passthrough(root / "string" / "1", models.OV_TYPES["BYTES"], [-1])
    serve("string", "string")
    models.build_passthrough(root / "string_matrix" / "1", models.OV_TYPES["BYTES"], [-1, -1])
    serve("string_matrix", "string_matrix")
    models.build_string_2d(root / "string_2d" / "1", [-1, -1])
    serve("string_2d", "string_2d")
    models.build_string_2d(root / "string_2d_fixed" / "1", [1, 10])
    serve("string_2d_fixed", "string_2d_fixed")
    models.build_add_two(root / "add_two" / "1" / "model.xml")
    serve("add_two", "add_two")
    models.build_two_outputs(root / "three_outputs" / "1" / "model.xml")
    serve("three_outputs", "three_outputs")
    models.build_relu(root / "dynamic" / "1" / "model.xml", [-1, -1])
    serve("dynamic", "dynamic")
    models.build_relu(root / "ranged" / "1" / "model.xml", [1, 10])
    serve("ranged", "ranged", shape="(1:4,2:12)")
    serve("spaced name", "dummy")  # reached over REST as /v2/models/spaced%20name
    serve("statistics_probe", "dummy")  # inferred only by test_model_config_statistics.py, which counts
    serve("batch_any", "dummy", batch_size="-1")
    serve("batch_range", "dummy", batch_size="1:3")
    serve("batch_fixed", "dummy", batch_size=2)
    models.build_add_constant(root / "scalar" / "1" / "model.xml", [], 1.0)
    serve("scalar", "scalar")
    models.build_relu(root / "nchw" / "1" / "model.xml", [1, 3, 4, 5])
    serve("layout_nhwc", "nchw", layout="NHWC:NCHW")
    serve("layout_annotated", "nchw", layout={"x": "NCHW"})
    models.build_relu(root / "cn" / "1" / "model.xml", [10, 1])
    serve("batch_second", "cn", layout="CN")
    models.build_dummy(root / "mapped" / "1" / "model.xml")
    models.write_mapping(root / "mapped" / "1", {"b": "input_alias"}, {"a": "output_alias"})
    serve("mapped", "mapped")
    for version in (1, 2, 3):
        models.build_add_constant(root / "versioned" / str(version) / "model.xml", [1, 1], float(version))
    (root / "versioned" / "not_a_version").mkdir()
    serve("versions_default", "versioned")
    serve("versions_all", "versioned", model_version_policy={"all": {}})
    serve("versions_latest2", "versioned", model_version_policy={"latest": {"num_versions": 2}})
    serve("versions_specific", "versioned", model_version_policy={"specific": {"versions": [1, 3]}})
    models.build_add_constant(root / "fallback" / "1" / "model.xml", [1, 1], 1.0)
    models.write_broken(root / "fallback" / "2")
    serve("fallback", "fallback")
    models.write_broken(root / "broken" / "1")
    serve("broken", "broken")
    serve("missing_path", "does/not/exist")
    models.build_bf16(root / "bf16" / "1" / "model.xml")
    serve("bf16", "bf16")
    models.build_runtime_failure(root / "odd_fails" / "1" / "model.xml")
    serve("odd_fails", "odd_fails")

    config = root / "config.json"
    config.write_text(json.dumps({"model_config_list": entries}, indent=1))
    return config


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(["--config_path", str(repository)], tmp_path_factory.mktemp("logs") / "server.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    """A tritonclient gRPC client of `server`: the session's, or the one a module serves with a `server` fixture of its
    own."""
    triton = grpcclient.InferenceServerClient(server.address)
    yield triton
    triton.close()


@pytest.fixture(scope="session")
def http_client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(server.rest_address)
    yield triton
    triton.close()


@pytest.fixture(scope="session")
def stub(server: ServerProcess):
    """The raw grpcio stub (tritonclient's generated one), for what tritonclient cannot send."""
    return server.stub
