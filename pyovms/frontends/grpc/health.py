"""The standard `grpc.health.v1.Health` service and gRPC server reflection, beside the KServe service.

Health: the empty service name is the server (SERVING once the initial load finished, NOT_SERVING before and while
shutting down); a model or pipeline name is that servable (SERVING while its default version is AVAILABLE); any
other name is NOT_FOUND, as the health protocol asks. Watch sends the status, then every change (checked each
second). Kubernetes gRPC probes and grpc_health_probe use Check.

Reflection lists these services and describes their messages, so grpcurl and similar tools work without .proto
files. pyovms's own messages live in a private descriptor pool; the health and reflection files are added to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from ...core import Server
from ...errors import ServingError, Status
from ...generated import grpc_predict_v2_pb2 as pb
from .access_guard import GuardedRegistration

WATCH_PERIOD_S = 1.0
_Status = health_pb2.HealthCheckResponse.ServingStatus


class HealthService(health_pb2_grpc.HealthServicer):
    """Health of the server and of each servable, from the core."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def _status(self, service: str) -> int | None:
        if service == "":
            return _Status.SERVING if self.server.ready() else _Status.NOT_SERVING
        try:
            ready = await self.server.model_ready(service)
        except ServingError as exc:
            if exc.status == Status.MODEL_NAME_MISSING:
                return None
            ready = False
        return _Status.SERVING if ready else _Status.NOT_SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        status = await self._status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service: {request.service}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            status = await self._status(request.service)
            if status is None:
                status = _Status.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_PERIOD_S)


def add_health_and_reflection(server: Server, registration: GuardedRegistration, service_name: str) -> None:
    """Register Health and reflection through `registration` (the gRPC server, guarded by the access policy),
    describing `service_name` and themselves."""
    health_pb2_grpc.add_HealthServicer_to_server(HealthService(server), registration)
    pool = pb.POOL
    for module in (health_pb2, reflection_pb2):
        try:
            pool.FindFileByName(module.DESCRIPTOR.name)
        except KeyError:
            proto = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(proto)
            pool.Add(proto)
    names = (service_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, registration)
