"""The access policy (`pyovms.access`) on gRPC: one interceptor, installed only when a restriction or an API key is
set, so an open server pays nothing per call.

A refused call is answered before its handler runs, with Triton's answer for a restricted protocol (UNAVAILABLE
`This protocol is restricted, expecting header '<header>'`) or UNAUTHENTICATED for a missing or wrong API key; a
refused stream is closed before any message is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from ..access import AccessPolicy, Denial, Group

HEALTH_SERVICE = "grpc.health.v1.Health"

GROUPS: dict[str, Group | None] = {
    "ServerLive": Group.HEALTH,
    "ServerReady": Group.HEALTH,
    "ModelReady": Group.HEALTH,
    "ServerMetadata": Group.METADATA,
    "ModelMetadata": Group.METADATA,
    "ModelInfer": Group.INFERENCE,
    "ModelStreamInfer": Group.INFERENCE,
    "ModelConfig": Group.MODEL_CONFIG,
    "ModelStatistics": Group.STATISTICS,
    "RepositoryIndex": Group.MODEL_REPOSITORY,
    "RepositoryModelLoad": Group.MODEL_REPOSITORY,
    "RepositoryModelUnload": Group.MODEL_REPOSITORY,
    "SystemSharedMemoryStatus": Group.SHARED_MEMORY,
    "SystemSharedMemoryRegister": Group.SHARED_MEMORY,
    "SystemSharedMemoryUnregister": Group.SHARED_MEMORY,
    "CudaSharedMemoryStatus": Group.SHARED_MEMORY,
    "CudaSharedMemoryRegister": Group.SHARED_MEMORY,
    "CudaSharedMemoryUnregister": Group.SHARED_MEMORY,
}
"""The group of each KServe method (by its name after the service)."""
PROBES = frozenset({"ServerLive", "ServerReady"})
"""Methods served without the API key (with grpc.health.v1), so that liveness and readiness probes keep working."""


def _classify(method: str, service_name: str) -> tuple[Group | None, bool]:
    """(group, probe) of a full method name `/package.Service/Method`; other services (reflection) are in no
    group and need the key."""
    service, _, name = method.lstrip("/").partition("/")
    if service == service_name:
        return GROUPS.get(name), name in PROBES
    if service == HEALTH_SERVICE:
        return Group.HEALTH, True
    return None, False


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Refuses the calls the policy denies, before their handlers run."""

    def __init__(self, policy: AccessPolicy, service_name: str) -> None:
        self.policy = policy
        self.service_name = service_name

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        metadata = {key: value for key, value in details.invocation_metadata or () if isinstance(value, str)}
        group, probe = _classify(details.method, self.service_name)
        denial = self.policy.check(group, probe, metadata.get)
        if denial is None:
            return handler
        if denial.unauthenticated:
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED, self.policy.key_message(metadata.get))
        return _refusing(handler, grpc.StatusCode.UNAVAILABLE, restricted_message(denial))


def restricted_message(denial: Denial) -> str:
    return f"This protocol is restricted, expecting header '{denial.header}'"


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers `code` and `message` without reading the request."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    serializer = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, response_serializer=serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=serializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, response_serializer=serializer)
    return grpc.unary_unary_rpc_method_handler(refuse, response_serializer=serializer)
