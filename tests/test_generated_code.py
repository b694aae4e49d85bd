"""The committed protobuf/gRPC code is what scripts/generate_protos.py makes from proto/ today."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pyovms"
EXPECTED = {
    Path("generated"): [
        "grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py", "mediapipe_graph_pb2.py",
        "mediapipe_graph_pb2.pyi",
    ],
}  # fmt: skip


def test_generated_code_is_fresh(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--out", str(tmp_path)], check=True)
    produced: dict[Path, list[str]] = {}
    for p in sorted(tmp_path.rglob("*")):
        if p.is_file():
            produced.setdefault(p.parent.relative_to(tmp_path), []).append(p.name)
    assert produced == EXPECTED
    for directory, names in EXPECTED.items():
        for name in names:
            assert (PACKAGE / directory / name).read_text() == (tmp_path / directory / name).read_text(), (
                f"{directory / name} is stale: run python scripts/generate_protos.py"
            )


def test_field_numbers_match_kserve():
    """A few field numbers clients depend on, checked on the generated descriptors."""
    from pyovms.generated import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest.DESCRIPTOR.fields_by_name
    assert request["raw_input_contents"].number == 7
    assert request["outputs"].number == 6
    stream = pb.ModelStreamInferResponse.DESCRIPTOR.fields_by_name
    assert (stream["error_message"].number, stream["infer_response"].number) == (1, 2)
    contents = pb.InferTensorContents.DESCRIPTOR.fields_by_name
    assert [contents[n].number for n in ("bool_contents", "uint64_contents", "bytes_contents")] == [1, 5, 8]
    methods = [m.name for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods]
    assert methods == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer", "ModelStreamInfer",
        "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
        "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
        "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
    ]  # fmt: skip


def test_triton_extension_messages_match_tritonclient():
    """Every field of the Triton extension messages pyovms defines has Triton's number, type and cardinality."""
    from tritonclient.grpc import model_config_pb2, service_pb2

    from pyovms.generated import grpc_predict_v2_pb2 as pb

    theirs = {**service_pb2.DESCRIPTOR.message_types_by_name, **model_config_pb2.DESCRIPTOR.message_types_by_name}
    names = [
        "ModelConfigRequest", "ModelConfigResponse", "ModelConfig", "ModelInput", "ModelOutput",
        "ModelStatisticsRequest", "ModelStatisticsResponse", "ModelStatistics", "InferStatistics",
        "InferBatchStatistics", "StatisticDuration", "RepositoryIndexRequest", "RepositoryIndexResponse",
        "ModelRepositoryParameter", "RepositoryModelLoadRequest", "RepositoryModelLoadResponse",
        "RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse", "SystemSharedMemoryStatusRequest",
        "SystemSharedMemoryStatusResponse", "SystemSharedMemoryRegisterRequest", "SystemSharedMemoryRegisterResponse",
        "SystemSharedMemoryUnregisterRequest", "SystemSharedMemoryUnregisterResponse", "CudaSharedMemoryStatusRequest",
        "CudaSharedMemoryStatusResponse", "CudaSharedMemoryRegisterRequest", "CudaSharedMemoryRegisterResponse",
        "CudaSharedMemoryUnregisterRequest", "CudaSharedMemoryUnregisterResponse",
    ]  # fmt: skip

    whole = {name for name in names if "Repository" in name or "SharedMemory" in name}  # in full; others: subsets

    def same(mine, other) -> None:  # fields, nested messages (maps' entries included) and oneofs
        assert {f.name for f in mine.fields} <= {f.name for f in other.fields}, mine.full_name
        if mine.full_name.split(".")[1] in whole:
            assert {f.name for f in mine.fields} == {f.name for f in other.fields}, mine.full_name
        for field in mine.fields:
            theirs_field = other.fields_by_name[field.name]
            assert (field.number, field.type, field.is_repeated) == (
                theirs_field.number, theirs_field.type, theirs_field.is_repeated,
            ), f"{mine.full_name}.{field.name}"  # fmt: skip
        assert set(mine.nested_types_by_name) <= set(other.nested_types_by_name), mine.full_name
        for nested_name, nested in mine.nested_types_by_name.items():
            same(nested, other.nested_types_by_name[nested_name])
        for oneof in mine.oneofs:
            assert [f.name for f in oneof.fields] == [f.name for f in other.oneofs_by_name[oneof.name].fields]

    for name in names:
        same(pb.DESCRIPTOR.message_types_by_name[name], theirs[name])
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    triton = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        other = triton.methods_by_name[method.name]
        assert (method.input_type.name, method.output_type.name) == (other.input_type.name, other.output_type.name)
    ours = {v.name: v.number for v in pb.DESCRIPTOR.enum_types_by_name["DataType"].values}
    assert ours == {v.name: v.number for v in model_config_pb2.DESCRIPTOR.enum_types_by_name["DataType"].values}


def test_private_descriptor_pool_coexists_with_tritonclient():
    """pyovms's messages live outside protobuf's default pool, so both can be imported in one process."""
    from tritonclient.grpc import service_pb2

    from pyovms.generated import grpc_predict_v2_pb2 as pb

    message = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"abc"])
    parsed = service_pb2.ModelInferRequest.FromString(message.SerializeToString())
    assert parsed.model_name == "m" and parsed.raw_input_contents == [b"abc"]


def test_graph_messages_use_a_private_pool_that_resolves_any_and_extensions():
    """The graph schema is outside the default pool, yet its pool knows google.protobuf.Any and the extensions."""
    from google.protobuf import descriptor_pool

    from pyovms.generated import mediapipe_graph_pb2 as pb

    assert pb.CalculatorGraphConfig.DESCRIPTOR.file.pool is pb.POOL
    assert pb.POOL.FindMessageTypeByName("google.protobuf.Any").full_name == "google.protobuf.Any"
    ext = pb.POOL.FindExtensionByName("mediapipe.PythonExecutorCalculatorOptions.ext")
    assert ext.containing_type.full_name == "mediapipe.CalculatorOptions"
    for name in ("mediapipe.CalculatorGraphConfig", "mediapipe.PythonExecutorCalculatorOptions"):
        try:
            descriptor_pool.Default().FindMessageTypeByName(name)
        except KeyError:
            continue
        raise AssertionError(f"{name} is registered in protobuf's default pool")


def test_a_protobuf_downgraded_by_a_client_is_named_at_startup():
    """A protobuf below 7 (what `pip install tritonclient` 2.42+ leaves) stops the command with the cause and the fix;
    the installed one passes."""
    from pyovms.version import protobuf_mismatch

    assert protobuf_mismatch() is None
    message = protobuf_mismatch("6.33.5")
    assert message is not None
    assert message.startswith("pyovms needs protobuf 7, but protobuf 6.33.5 is installed: a package installed later")
    assert "pip install 'pyovms[client]'" in message


def test_the_client_extra_runs_beside_the_server():
    """README's client install is `pyovms[client]`; the tritonclient it pins accepts the protobuf the server needs (the
    test extra installs the same pin, so this suite runs with it)."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement

    readme = (ROOT / "README.md").read_text()
    assert "pip install 'pyovms[client]'" in readme
    assert "pip install 'tritonclient" not in readme
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "pyovms[client]" in extras["test"]
    (pin,) = (Requirement(text) for text in extras["client"])
    installed = importlib.metadata.version("tritonclient")
    assert pin.name == "tritonclient" and pin.specifier.contains(installed)
    protobuf = importlib.metadata.version("protobuf")
    for text in importlib.metadata.requires("tritonclient") or []:
        requirement = Requirement(text)
        if requirement.name == "protobuf":
            assert requirement.specifier.contains(protobuf), f"tritonclient {installed} wants {requirement}"
