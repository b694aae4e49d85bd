"""The access policy (`pyovms.frontends.access`) on gRPC: every registered method's handler wrapped with its check,
only when a restriction or an API key is set, so an open server pays nothing per call (a wrapped call pays a few
microseconds, less than a grpc.aio interceptor's pipeline).

A refused call is answered before its handler runs, with Triton's answer for a restricted protocol (UNAVAILABLE
`This protocol is restricted, expecting header '<header>'`) or UNAUTHENTICATED for a missing or wrong API key; a
refused stream ends before any message is read.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc

from ..access import AccessPolicy, Denial, Group

HEALTH_SERVICE = "grpc.health.v1.Health"

GROUPS: dict[str, Group] = {
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
"""The group of each KServe method."""
PROBES = frozenset({"ServerLive", "ServerReady"})
"""KServe methods served without the API key (with grpc.health.v1), so that liveness and readiness probes work."""


def classify(service: str, method: str) -> tuple[Group | None, bool]:
    """(group, probe) of a method: grpc.health.v1's are health probes, KServe's are in the tables above, and other
    services' (reflection) are in no group and need the key."""
    if service == HEALTH_SERVICE:
        return Group.HEALTH, True
    return GROUPS.get(method), method in PROBES


def guarded(
    service: str, handlers: Mapping[str, grpc.RpcMethodHandler], policy: AccessPolicy | None
) -> dict[str, grpc.RpcMethodHandler]:
    """`handlers` of `service` (by method name), each checking the policy before it runs; unchanged when the policy
    refuses nothing."""
    if policy is None or not policy.active:
        return dict(handlers)
    return {method: _guard(handler, policy, *classify(service, method)) for method, handler in handlers.items()}


class GuardedRegistration:
    """Stands in for the gRPC server in generated `add_*Servicer_to_server` functions: their methods are registered
    on the real server, guarded (registered methods serve every call to their paths, so the generic handler they also
    offer is not needed)."""

    def __init__(self, server: grpc.aio.Server, policy: AccessPolicy | None) -> None:
        self.server = server
        self.policy = policy

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Left out: the registered handlers below serve the same methods."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self.server.add_registered_method_handlers(service, guarded(service, handlers, self.policy))


def restricted_message(denial: Denial) -> str:
    return f"This protocol is restricted, expecting header '{denial.header}'"


def _guard(handler: grpc.RpcMethodHandler, policy: AccessPolicy, group: Group | None, probe: bool) -> Any:
    """A handler of the same kind as `handler` that refuses what `policy` denies, then runs `handler`."""

    async def refusal(context: grpc.aio.ServicerContext) -> None:
        """Abort the call when the policy denies it."""
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        denial = policy.check(group, probe, metadata.get)
        if denial is None:
            return
        if denial.unauthenticated:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, policy.key_message(metadata.get))
        await context.abort(grpc.StatusCode.UNAVAILABLE, restricted_message(denial))

    kinds: dict[tuple[bool, bool], tuple[str, Callable[..., grpc.RpcMethodHandler]]] = {
        (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
        (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
        (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
        (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
    }
    attribute, build = kinds[handler.request_streaming, handler.response_streaming]
    behavior = getattr(handler, attribute)

    if handler.response_streaming:

        async def checked_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await refusal(context)
            produced = behavior(request, context)
            if inspect.isawaitable(produced):  # a handler that writes with context.write()
                await produced
                return
            async for response in produced:
                yield response

        checked: Callable[..., Any] = checked_stream
    else:

        async def checked_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await refusal(context)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        checked = checked_unary
    return build(
        checked, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )
