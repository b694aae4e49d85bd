"""The standard gRPC health service (server and per servable) and gRPC server reflection."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def health(server):
    with grpc.insecure_channel(server.address) as channel:
        yield health_pb2_grpc.HealthStub(channel)


@pytest.mark.parametrize(
    ("service", "status"),
    [
        ("", SERVING),
        ("dummy", SERVING),
        ("versions_all", SERVING),
        ("broken", NOT_SERVING),
        ("missing_path", NOT_SERVING),
    ],
)
def test_check(health, service, status):
    assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == status


def test_unknown_service_is_not_found(health):
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no_such_model"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "unknown service: no_such_model"


def test_watch_sends_the_current_status(health):
    stream = health.Watch(health_pb2.HealthCheckRequest(service="dummy"), timeout=10)
    assert next(stream).status == SERVING
    stream.cancel()
    unknown = health.Watch(health_pb2.HealthCheckRequest(service="no_such_model"), timeout=10)
    assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    unknown.cancel()


def test_reflection_lists_and_describes_the_services(server):
    with grpc.insecure_channel(server.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert set(database.get_services()) == {
            "inference.GRPCInferenceService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
        }  # fmt: skip
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("inference.GRPCInferenceService")
        infer = service.methods_by_name["ModelInfer"]
        assert infer.input_type.full_name == "inference.ModelInferRequest"
        assert infer.input_type.fields_by_name["raw_input_contents"].number == 7
        assert pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"] is not None
