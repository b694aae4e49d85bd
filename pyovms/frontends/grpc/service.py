"""`inference.GRPCInferenceService` on grpc.aio: each RPC parses its message, calls the core, encodes the answer.

Handlers receive the request bytes and parse them themselves, so that a message that does not parse is
answered INVALID_ARGUMENT with a message (a plain grpc.aio server would answer UNKNOWN). Core errors become
their gRPC code with the OVMS message; any other exception becomes INTERNAL and its traceback is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from ...core import Server
from ...errors import ServingError, Status
from ...generated import grpc_predict_v2_pb2 as pb
from ..access import AccessPolicy
from ..transport import TlsSettings
from . import converters
from .access_guard import GuardedRegistration, guarded
from .health import add_health_and_reflection
from .status import grpc_code

log = logging.getLogger("pyovms.grpc")

SERVICE_NAME = "inference.GRPCInferenceService"
INTERFACE = "gRPC"
"""The `interface` label of this front end's metrics."""

UNREQUESTED_CALL_WAIT_S = 600
"""How long an arrived call may wait for the server to take it (`--grpc_channel_arguments` can change it)."""

M = TypeVar("M", bound=Message)


def _parse(message_type: type[M], data: bytes) -> M:
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise ServingError(Status.REQUEST_UNPARSABLE, f"{message_type.__name__}: {exc}") from exc


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> NoReturn:
    """Answer `exc`: a core error with its code and OVMS message, anything else INTERNAL (traceback logged)."""
    if isinstance(exc, ServingError):
        log.debug("%s: %s", method, exc.message)
        await context.abort(grpc_code(exc.status), exc.message)
    log.error("%s failed", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, Status.INTERNAL_ERROR.message)
    raise AssertionError("unreachable")  # abort() raises


async def _answer(context: grpc.aio.ServicerContext, method: str, call: Callable[[], Awaitable[Message]]) -> Message:
    try:
        return await call()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await _abort(context, method, exc)


class InferenceService:
    """The KServe v2 RPCs, bound to one core `Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def server_live(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            _parse(pb.ServerLiveRequest, data)
            return pb.ServerLiveResponse(live=self.server.live())

        return await _answer(context, "ServerLive", call)

    async def server_ready(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            _parse(pb.ServerReadyRequest, data)
            return pb.ServerReadyResponse(ready=self.server.ready())

        return await _answer(context, "ServerReady", call)

    async def server_metadata(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            _parse(pb.ServerMetadataRequest, data)
            return converters.server_metadata_to_pb(self.server.metadata())

        return await _answer(context, "ServerMetadata", call)

    async def model_ready(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.ModelReadyRequest, data)
            ready = await self.server.observed(
                INTERFACE, "ModelReady", request.name, request.version,
                self.server.model_ready(request.name, request.version),
            )  # fmt: skip
            return pb.ModelReadyResponse(ready=ready)

        return await _answer(context, "ModelReady", call)

    async def model_metadata(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.ModelMetadataRequest, data)
            metadata = await self.server.observed(
                INTERFACE, "ModelMetadata", request.name, request.version,
                self.server.model_metadata(request.name, request.version),
            )  # fmt: skip
            return converters.model_metadata_to_pb(metadata)

        return await _answer(context, "ModelMetadata", call)

    async def model_infer(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        # The hot path: written out rather than through `_answer`, which costs a closure and a coroutine per call.
        started = time.perf_counter()
        request = None
        try:
            request = converters.infer_request_from_pb(_parse(pb.ModelInferRequest, data))
            response = converters.infer_response_to_pb(await self.server.infer(request))
            self.server.record(INTERFACE, "ModelInfer", request.model_name, request.model_version, True, started)
            return response
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if request is not None:
                self.server.record(INTERFACE, "ModelInfer", request.model_name, request.model_version, False, started)
            await _abort(context, "ModelInfer", exc)

    async def model_config(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.ModelConfigRequest, data)
            return converters.model_config_to_pb(await self.server.model_metadata(request.name, request.version))

        return await _answer(context, "ModelConfig", call)

    async def model_statistics(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.ModelStatisticsRequest, data)
            return converters.model_statistics_to_pb(await self.server.model_statistics(request.name, request.version))

        return await _answer(context, "ModelStatistics", call)

    async def repository_index(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.RepositoryIndexRequest, data)
            return converters.repository_index_to_pb(self.server.repository_index(request.ready))

        return await _answer(context, "RepositoryIndex", call)

    async def repository_model_load(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.RepositoryModelLoadRequest, data)
            await self.server.load_model(request.model_name, converters.parameters_from_pb(request.parameters))
            return pb.RepositoryModelLoadResponse()

        return await _answer(context, "RepositoryModelLoad", call)

    async def repository_model_unload(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.RepositoryModelUnloadRequest, data)
            await self.server.unload_model(request.model_name, converters.parameters_from_pb(request.parameters))
            return pb.RepositoryModelUnloadResponse()

        return await _answer(context, "RepositoryModelUnload", call)

    async def shared_memory_status(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.SystemSharedMemoryStatusRequest, data)
            return converters.shared_memory_status_to_pb(self.server.shared_memory_status(request.name))

        return await _answer(context, "SystemSharedMemoryStatus", call)

    async def shared_memory_register(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.SystemSharedMemoryRegisterRequest, data)
            await self.server.register_shared_memory(request.name, request.key, request.offset, request.byte_size)
            return pb.SystemSharedMemoryRegisterResponse()

        return await _answer(context, "SystemSharedMemoryRegister", call)

    async def shared_memory_unregister(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.SystemSharedMemoryUnregisterRequest, data)
            await self.server.unregister_shared_memory(request.name)
            return pb.SystemSharedMemoryUnregisterResponse()

        return await _answer(context, "SystemSharedMemoryUnregister", call)

    async def cuda_shared_memory_status(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.CudaSharedMemoryStatusRequest, data)
            self.server.cuda_shared_memory_status(request.name)
            return pb.CudaSharedMemoryStatusResponse()

        return await _answer(context, "CudaSharedMemoryStatus", call)

    async def cuda_shared_memory_register(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.CudaSharedMemoryRegisterRequest, data)
            self.server.register_cuda_shared_memory(request.name)
            return pb.CudaSharedMemoryRegisterResponse()

        return await _answer(context, "CudaSharedMemoryRegister", call)

    async def cuda_shared_memory_unregister(self, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        async def call() -> Message:
            request = _parse(pb.CudaSharedMemoryUnregisterRequest, data)
            self.server.unregister_cuda_shared_memory(request.name)
            return pb.CudaSharedMemoryUnregisterResponse()

        return await _answer(context, "CudaSharedMemoryUnregister", call)

    async def model_stream_infer(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Message]:
        """Streams on graphs (responses as the graph produces them) and on models and pipelines (one response per
        request, in order): responses and in-stream errors (`error_message`); a failure of the whole stream ends the
        call with its status."""

        async def parsed() -> AsyncIterator[Any]:
            async for data in requests:
                try:
                    yield converters.infer_request_from_pb(_parse(pb.ModelInferRequest, data))
                except ServingError as exc:
                    yield exc  # answered in-stream

        try:
            async for item in self.server.infer_stream(parsed()):
                yield converters.stream_item_to_pb(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await _abort(context, "ModelStreamInfer", exc)

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The service's methods by name, to register on a grpc.aio server."""
        unary = {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ServerMetadata": self.server_metadata,
            "ModelReady": self.model_ready,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
            "ModelConfig": self.model_config,
            "ModelStatistics": self.model_statistics,
            "RepositoryIndex": self.repository_index,
            "RepositoryModelLoad": self.repository_model_load,
            "RepositoryModelUnload": self.repository_model_unload,
            "SystemSharedMemoryStatus": self.shared_memory_status,
            "SystemSharedMemoryRegister": self.shared_memory_register,
            "SystemSharedMemoryUnregister": self.shared_memory_unregister,
            "CudaSharedMemoryStatus": self.cuda_shared_memory_status,
            "CudaSharedMemoryRegister": self.cuda_shared_memory_register,
            "CudaSharedMemoryUnregister": self.cuda_shared_memory_unregister,
        }
        methods: dict[str, grpc.RpcMethodHandler] = {
            name: grpc.unary_unary_rpc_method_handler(fn, response_serializer=_serialize) for name, fn in unary.items()
        }
        methods["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            self.model_stream_infer, response_serializer=_serialize
        )
        return methods


async def start_grpc_server(
    server: Server,
    port: int,
    bind_addresses: list[str],
    max_message_size: int,
    channel_arguments: list[tuple[str, Any]],
    share_port: bool = False,
    tls: TlsSettings | None = None,
    access: AccessPolicy | None = None,
) -> grpc.aio.Server:
    """Create, bind and start the gRPC server; raise OSError when an address cannot be bound.

    `share_port` sets SO_REUSEPORT so that `--grpc_workers` processes bind the same port; otherwise a port that
    another process holds is an error, as in OVMS. `access` refuses the calls it denies (restrictions, API key).
    """
    options: dict[str, Any] = {
        "grpc.max_send_message_length": max_message_size,
        "grpc.max_receive_message_length": max_message_size,
        "grpc.so_reuseport": int(share_port),
        # grpc.aio takes new calls from gRPC core one per event-loop turn; under heavy load calls wait for it, and
        # core cancels a call that waited 30 s (its default). Clients' deadlines still apply.
        "grpc.server_max_unrequested_time_in_server": UNREQUESTED_CALL_WAIT_S,
    }
    options.update(dict(channel_arguments))
    grpc_server = grpc.aio.server(options=list(options.items()))
    # Registered methods, not a generic handler: grpc.aio keeps one call requested from gRPC core per registered
    # method (one in all for generic handlers) and takes calls one per event-loop turn, so with a generic handler
    # a ModelInfer call queues behind every stream still being opened (seconds with hundreds of busy streams).
    handlers = guarded(SERVICE_NAME, InferenceService(server).method_handlers(), access)
    grpc_server.add_registered_method_handlers(SERVICE_NAME, handlers)
    add_health_and_reflection(server, GuardedRegistration(grpc_server, access), SERVICE_NAME)
    credentials = _server_credentials(tls) if tls is not None else None
    for address in bind_addresses:
        host = f"[{address}]" if ":" in address and not address.startswith("[") else address
        try:
            if credentials is None:
                bound = grpc_server.add_insecure_port(f"{host}:{port}")
            else:
                bound = grpc_server.add_secure_port(f"{host}:{port}", credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot bind gRPC server to {host}:{port}: {exc}") from exc
        if bound == 0:
            raise OSError(f"cannot bind gRPC server to {host}:{port}")
    await grpc_server.start()
    return grpc_server


def _server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """TLS credentials; with a client CA, clients must present a certificate it signed (mutual TLS)."""
    with open(tls.key, "rb") as key, open(tls.cert, "rb") as cert:
        pair = (key.read(), cert.read())
    client_ca = None
    if tls.client_ca:
        with open(tls.client_ca, "rb") as ca:
            client_ca = ca.read()
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)
