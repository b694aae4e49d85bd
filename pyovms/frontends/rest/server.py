"""The REST server: aiohttp's low-level HTTP server on the same event loop as gRPC, one handler per route.

Each handler reads the request, calls the core `Server`, and writes JSON (orjson). Errors are `{"error": "..."}`
with the HTTP code of `pyovms.frontends.rest.status`; any other exception is logged and answered 500
`Internal server error`. CORS headers (`--allowed_*`, `--allow_credentials`) go on every response, and OPTIONS on any
path is a pre-flight answered 200.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

import orjson
from aiohttp import web

from ...core import Server
from ...errors import ServingError, Status
from ...observability.statistics import Duration
from ...tensors import datatypes
from ...tensors.messages import ModelMetadata, TensorSpec, VersionStatistics
from ..access import AccessPolicy, Group
from ..transport import CorsSettings, TlsSettings
from . import routes
from .infer_codec import encode_infer_response, parse_infer_request, parse_json
from .status import http_code

log = logging.getLogger("pyovms.rest")

JSON = "application/json"
HEADER_LENGTH = "Inference-Header-Content-Length"
INTERFACE = "REST"
"""The `interface` label of this front end's metrics."""
_INT64_MAX = (1 << 63) - 1

T = TypeVar("T")
Handler = Callable[[web.BaseRequest, routes.Match], Awaitable[web.Response]]


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type=JSON)


def _error(exc: ServingError) -> web.Response:
    code = http_code(exc.status)
    if code == 204:  # a demultiplexer produced nothing: no content, as OVMS answers
        return web.Response(status=204)
    return _json({"error": exc.message}, code)


def _version(digits: str) -> str:
    """The URL's `/versions/N`: digits always (the route says so); beyond int64 no such version can exist."""
    if not digits:
        return ""
    value = int(digits)
    if value > _INT64_MAX:
        raise ServingError(Status.MODEL_VERSION_MISSING, f"version: {digits}")
    return str(value)


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": spec.metadata_shape}


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "data_type": datatypes.triton_config_datatype(spec.datatype),
        "dims": spec.metadata_shape,
    }


def _duration(duration: Duration) -> dict[str, int]:
    return {"count": duration.count, "ns": duration.ns}


def _statistics(entries: list[VersionStatistics]) -> dict[str, Any]:
    stats = []
    for entry in entries:
        s = entry.statistics
        phases = {
            "compute_input": s.compute_input,
            "compute_infer": s.compute_infer,
            "compute_output": s.compute_output,
        }
        stats.append(
            {
                "name": entry.name,
                "version": entry.version,
                "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    name: _duration(d)
                    for name, d in {"success": s.success, "fail": s.fail, "queue": s.queue, **phases}.items()
                },
                "batch_stats": [{"batch_size": 1, **{k: _duration(d) for k, d in phases.items()}}]
                if s.execution_count
                else [],
            }
        )
    return {"model_stats": stats}


def _repository_parameters(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ServingError(Status.REPOSITORY_REQUEST_INVALID, "parameters must be a JSON object")
    return parameters


class Cors:
    """The CORS headers of every response and of pre-flight answers."""

    def __init__(self, settings: CorsSettings) -> None:
        self.settings = settings
        self.origins = {o.strip() for o in settings.origins.split(",") if o.strip()}

    def apply(self, request: web.BaseRequest, response: web.StreamResponse, preflight: bool = False) -> None:
        origin = request.headers.get("Origin")
        headers = response.headers
        if "*" in self.origins:
            # With credentials a browser refuses `*`: the request's own origin is echoed instead.
            headers["Access-Control-Allow-Origin"] = origin if (self.settings.credentials and origin) else "*"
        elif origin in self.origins:
            headers["Access-Control-Allow-Origin"] = origin
        else:
            return
        if headers["Access-Control-Allow-Origin"] != "*":
            headers["Vary"] = "Origin"
        if self.settings.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if preflight:
            headers["Access-Control-Allow-Methods"] = self.settings.methods
            headers["Access-Control-Allow-Headers"] = self.settings.headers


class RestApi:
    """The KServe v2 REST routes (and Triton's config/statistics routes), bound to one core `Server`."""

    def __init__(
        self, server: Server, cors: CorsSettings, max_body_size: int, access: AccessPolicy | None = None
    ) -> None:
        self.server = server
        self.cors = Cors(cors)
        self.max_body_size = max_body_size
        self.access = access if access is not None and access.active else None
        """Restrictions and the API key; None when nothing is refused (no check per request then)."""
        self.handlers: dict[str, Handler] = {route.name: getattr(self, route.name) for route in routes.ROUTES}

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """aiohttp's entry: route, check access, answer, add CORS headers; never raises."""
        if request.method == "OPTIONS":  # a browser's pre-flight carries no credentials
            response = web.Response(status=200)
            self.cors.apply(request, response, preflight=True)
            return response
        try:
            try:
                found = routes.match(request.method, request.raw_path.partition("?")[0])
            except ServingError:
                refused = self._refused(request, None, probe=request.path.startswith("/v2/health/"))
                if refused is None:
                    raise
                response = refused  # without the key, a wrong URL is answered 401 like the others
            else:
                refused = self._refused(request, found.route.group, found.route.probe)
                response = refused or await self.handlers[found.route.name](request, found)
        except ServingError as exc:
            log.debug("%s %s: %s", request.method, request.raw_path, exc.message)
            response = _error(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.raw_path)
            response = _error(ServingError(Status.INTERNAL_ERROR))
        self.cors.apply(request, response)
        return response

    def _refused(self, request: web.BaseRequest, group: Group | None, probe: bool) -> web.Response | None:
        """The answer to a call the access policy refuses (401 without the API key, 403 for a restricted group, as
        Triton answers), or None."""
        if self.access is None:
            return None
        header = request.headers.get
        denial = self.access.check(group, probe, header)
        if denial is None:
            return None
        if denial.unauthenticated:
            response = _json({"error": self.access.key_message(header)}, 401)
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = _json({"error": f"This API is restricted, expecting header '{denial.header}'"}, 403)
        return response

    async def live(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        return web.Response(status=200 if self.server.live() else 500)

    async def ready(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        if not self.server.ready():
            raise ServingError(Status.SERVER_NOT_READY)
        return web.Response(status=200)

    async def server_metadata(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        metadata = self.server.metadata()
        return _json({"name": metadata.name, "version": metadata.version, "extensions": metadata.extensions})

    async def _observed(self, method: str, found: routes.Match, call: Awaitable[T]) -> T:
        return await self.server.observed(INTERFACE, method, found.name, found.version, call)

    async def model_metadata(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        metadata: ModelMetadata = await self._observed(
            "ModelMetadata", found, self.server.model_metadata(found.name, _version(found.version))
        )
        return _json(
            {
                "name": metadata.name,
                "versions": metadata.versions,
                "platform": metadata.platform,
                "inputs": [_tensor(s) for s in metadata.inputs],
                "outputs": [_tensor(s) for s in metadata.outputs],
            }
        )

    async def model_ready(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        if not await self._observed("ModelReady", found, self.server.model_ready(found.name, _version(found.version))):
            raise ServingError(Status.MODEL_VERSION_NOT_LOADED_YET)
        return web.Response(status=200)

    async def model_config(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        metadata = await self.server.model_metadata(found.name, _version(found.version))
        return _json(
            {
                "name": metadata.name,
                "platform": metadata.platform,
                "backend": "openvino",
                "max_batch_size": 0,
                "input": [_config_tensor(s) for s in metadata.inputs],
                "output": [_config_tensor(s) for s in metadata.outputs],
            }
        )

    async def model_statistics(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        return _json(_statistics(await self.server.model_statistics(found.name, _version(found.version))))

    async def all_statistics(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        return _json(_statistics(await self.server.model_statistics()))

    async def repository_index(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        ready = (await self._json_body(request)).get("ready", False)
        if not isinstance(ready, bool):
            raise ServingError(Status.REPOSITORY_REQUEST_INVALID, "ready must be a bool")
        entries = self.server.repository_index(ready)
        return _json([{k: v for k, v in asdict(entry).items() if v or k == "name"} for entry in entries])

    async def repository_load(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        await self.server.load_model(found.name, _repository_parameters(await self._json_body(request)))
        return web.Response(status=200)

    async def repository_unload(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        await self.server.unload_model(found.name, _repository_parameters(await self._json_body(request)))
        return web.Response(status=200)

    async def shared_memory_status(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        return _json([asdict(region) for region in self.server.shared_memory_status(found.name)])

    async def shared_memory_register(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        body = await self._json_body(request)
        key, offset, byte_size = body.get("key"), body.get("offset", 0), body.get("byte_size")
        if not isinstance(key, str) or type(offset) is not int or type(byte_size) is not int:
            raise ServingError(
                Status.SHM_REQUEST_INVALID, "the body needs key (a string), byte_size and offset (integers)"
            )
        await self.server.register_shared_memory(found.name, key, offset, byte_size)
        return web.Response(status=200)

    async def shared_memory_unregister(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        await self.server.unregister_shared_memory(found.name)
        return web.Response(status=200)

    async def cuda_shared_memory_status(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        return _json(self.server.cuda_shared_memory_status(found.name))

    async def cuda_shared_memory_register(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        self.server.register_cuda_shared_memory(found.name)
        return web.Response(status=200)

    async def cuda_shared_memory_unregister(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        self.server.unregister_cuda_shared_memory(found.name)
        return web.Response(status=200)

    async def _json_body(self, request: web.BaseRequest) -> dict[str, Any]:
        """A small JSON object body (an empty body is `{}`)."""
        body = await self._read_body(request)
        if not body.strip():
            return {}
        document = parse_json(body)
        if not isinstance(document, dict):
            raise ServingError(Status.REST_BODY_IS_NOT_AN_OBJECT)
        return document

    async def config_reload(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        changed = await self.server.reload()
        return self._statuses(201 if changed else 200)

    async def metrics(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        if self.server.metrics is None:
            raise ServingError(Status.REST_INVALID_URL, "metrics are not enabled")
        return web.Response(
            body=await self.server.metrics_text(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def config_status(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        return self._statuses(200)

    def _statuses(self, code: int) -> web.Response:
        return _json(
            {
                name: {
                    "model_version_status": [
                        {
                            "version": v.version,
                            "state": v.state,
                            "status": {"error_code": v.error_code, "error_message": v.error_code},
                        }
                        for v in versions
                    ]
                }
                for name, versions in self.server.model_statuses().items()
            },
            code,
        )

    async def model_infer(self, request: web.BaseRequest, found: routes.Match) -> web.Response:
        body = await self._read_body(request)
        infer_request, choice = parse_infer_request(
            body, request.headers.get(HEADER_LENGTH), found.name, _version(found.version)
        )
        response = await self._observed("ModelInfer", found, self.server.infer(infer_request))
        payload, json_length = encode_infer_response(response, choice)
        if json_length is None:
            return web.Response(body=payload, content_type=JSON)
        return web.Response(
            body=payload, content_type="application/octet-stream", headers={HEADER_LENGTH: str(json_length)}
        )

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The whole body, refused past `max_body_size` before it is read (Content-Length) or while it streams."""
        limit = self.max_body_size
        declared = request.content_length
        if declared is not None and declared > limit:
            raise ServingError(Status.REST_BODY_TOO_LARGE, f"{declared} bytes; limit: {limit} bytes")
        if declared == 0:  # aiohttp's readexactly(0) raises once the (empty) stream is at EOF
            return b""
        if declared is not None:
            try:
                return await request.content.readexactly(declared)
            except asyncio.IncompleteReadError as exc:
                raise ServingError(
                    Status.REST_COULD_NOT_PARSE_INPUT, f"body ended after {len(exc.partial)} of {declared} bytes"
                ) from None
        chunks, size = [], 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise ServingError(Status.REST_BODY_TOO_LARGE, f"more than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class RestServer:
    """The listening sockets of the REST API and their shutdown."""

    def __init__(self, web_server: web.Server, listeners: list[asyncio.Server]) -> None:
        self._web_server = web_server
        self._listeners = listeners

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, then let requests in flight finish for up to `grace_s` seconds."""
        for listener in self._listeners:
            listener.close()
        await self._web_server.shutdown(grace_s)


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The REST server's TLS context; with a client CA, client certificates are required (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca:
        context.load_verify_locations(tls.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def start_rest_server(
    api: RestApi, port: int, bind_addresses: list[str], share_port: bool = False, tls: TlsSettings | None = None
) -> RestServer:
    """Bind every address on `port` and serve `api`; raise OSError when an address cannot be bound."""
    web_server = web.Server(api.handle, access_log=None)
    loop = asyncio.get_running_loop()
    context = ssl_context(tls) if tls is not None else None
    listeners = []
    try:
        for address in bind_addresses:
            listeners.append(
                await loop.create_server(
                    web_server, address.strip("[]"), port, reuse_port=share_port or None, ssl=context
                )
            )
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return RestServer(web_server, listeners)
