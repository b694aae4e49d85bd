"""The protocol-neutral entry every front end calls: health, metadata and inference.

`Server` knows servables and tensors, never a wire format: gRPC and REST front ends translate their messages
into `pyovms.tensors.messages` types, call these methods, and translate the answers (or `ServingError`) back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import ServingError, Status
from .observability.metrics import Metrics, merge_expositions
from .observability.statistics import InferStatistics
from .repository.registry import Repository, VersionState, check_available
from .tensors import shared_memory
from .tensors.images import DEFAULT_MAX_DECODED_BYTES
from .tensors.messages import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    RepositoryEntry,
    ServerMetadata,
    StreamError,
    VersionStatistics,
    VersionStatus,
)
from .tensors.shared_memory import RegionStatus, SharedMemoryRegistry
from .tensors.validation import check_requested_outputs, prepare_inputs, resolve_pending

if TYPE_CHECKING:
    from .control.repository_extension import RepositoryControl
from .version import __version__

log = logging.getLogger("pyovms.core")

T = TypeVar("T")

SERVER_NAME = "pyovms"
EXTENSIONS = ("model_configuration", "statistics")
"""Extensions beyond KServe v2 that every front end serves (Triton's names, which tools such as perf_analyzer
look for in ServerMetadata)."""
MODEL_CONTROL_EXTENSIONS = ("model_repository", "model_repository(unload_dependents)")
"""Listed when clients may load and unload (`--allow_model_control`)."""


class Server:
    """One model server: a repository plus the readiness flags the health calls report."""

    def __init__(
        self, repository: Repository | None = None, max_image_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    ) -> None:
        self.repository = repository or Repository()
        self.max_image_decoded_bytes = max_image_decoded_bytes
        self.extensions = list(EXTENSIONS)
        self.reloader: Callable[[], Awaitable[bool]] | None = None
        """Applies the configuration again (set by the process wiring); see `reload`."""
        self.metrics: Metrics | None = None
        """Set when metrics are enabled; front ends report each request through `record`."""
        self.control: RepositoryControl | None = None
        """The repository extension's index, load and unload (set by the process wiring)."""
        self.shared_memory: SharedMemoryRegistry | None = None
        """The system shared memory extension's regions; None while the extension is off."""
        self.allow_model_control = False
        self.peers: Peers | None = None
        """Under --grpc_workers: the other workers, which apply every control call too (set by the process wiring)."""
        """Whether clients may load and unload (the program embedding the server always may: `trusted` calls)."""
        self._live = True
        self._ready = False
        self.every_worker_ready = True
        """Under --grpc_workers: whether every worker has finished its initial load and runs (the supervisor says)."""

    def live(self) -> bool:
        return self._live

    def ready(self) -> bool:
        """True once the initial load finished, even when some models failed to load (under --grpc_workers: in every
        worker)."""
        return self._ready and self.every_worker_ready

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def metadata(self) -> ServerMetadata:
        extensions = [
            *self.extensions,
            *(MODEL_CONTROL_EXTENSIONS if self.allow_model_control else ()),
            *(["system_shared_memory"] if self.shared_memory is not None else []),
        ]
        return ServerMetadata(SERVER_NAME, __version__, extensions)

    def shared_memory_status(self, name: str = "") -> list[RegionStatus]:
        """The registered system shared memory regions (one, when named)."""
        return self._shared_memory().status(name)

    async def register_shared_memory(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Register a region (under --grpc_workers, in every worker before answering)."""
        self._shared_memory()  # refused here, before anything is relayed, when the extension is off
        call = {"method": "register_shared_memory", "name": name, "key": key, "offset": offset, "byte_size": byte_size}
        await self._everywhere(call)

    async def unregister_shared_memory(self, name: str = "") -> None:
        """Unregister one region, or every region when `name` is empty (under --grpc_workers, in every worker)."""
        self._shared_memory()
        await self._everywhere({"method": "unregister_shared_memory", "name": name})

    def cuda_shared_memory_status(self, name: str = "") -> list[RegionStatus]:
        """CUDA shared memory, as Triton without GPUs answers: no region is registered (a named one is missing)."""
        if name:
            raise ServingError(Status.CUDA_SHM_REGION_MISSING, f"region: {name}")
        return []

    def unregister_cuda_shared_memory(self, name: str = "") -> None:
        """Nothing to unregister without GPUs: OK once shared memory is enabled, as Triton answers (its example
        clients unregister CUDA regions as clean-up before they use system shared memory)."""
        self._shared_memory()

    def register_cuda_shared_memory(self, name: str) -> None:
        self._shared_memory()
        raise ServingError(
            Status.CUDA_SHM_NOT_SERVED, f"failed to register CUDA shared memory region: '{name}', GPUs not supported"
        )

    def _shared_memory(self) -> SharedMemoryRegistry:
        if self.shared_memory is None:
            raise ServingError(Status.SHM_NOT_ENABLED, "start the server with --allow_client_shm")
        return self.shared_memory

    async def model_ready(self, name: str, version: str = "") -> bool:
        """Whether the named version (default: the highest available) is AVAILABLE."""
        entry = self.repository.find_version(name, version, zero_is_default=False)
        return entry.state == VersionState.AVAILABLE

    async def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        entry = self.repository.find_version(name, version, zero_is_default=False)
        check_available(entry)
        servable = entry.servable
        assert servable is not None
        model = self.repository.get_model(name)
        versions = sorted(set(model.available_versions()) | {entry.version})
        return ModelMetadata(
            name=name,
            versions=[str(v) for v in versions],
            platform=servable.platform,
            inputs=list(servable.inputs.values()),
            outputs=list(servable.outputs.values()),
        )

    async def infer(self, request: InferRequest) -> InferResponse:
        """Validate and run one inference on the model version the request names."""
        if shared_memory.named_by(request):
            return await self._infer_with_shared_memory(request)
        return await self._infer(request)

    async def _infer_with_shared_memory(self, request: InferRequest) -> InferResponse:
        """Inputs read from, and outputs written to, the shared memory regions the request names."""
        held = shared_memory.attach(self.shared_memory, request)
        try:
            return shared_memory.write_outputs(held, await self._infer(request, held))
        finally:
            shared_memory.release(self.shared_memory, held)

    async def _infer(self, request: InferRequest, held: shared_memory.RequestMemory | None = None) -> InferResponse:
        entry = await self.repository.serving_version(request.model_name, request.model_version)
        servable = entry.servable
        assert servable is not None
        started = time.perf_counter_ns()
        statistics = servable.statistics
        statistics.in_flight += 1
        try:
            if entry.kind == "graph":  # a graph reads the request itself (its inputs depend on stream tags)
                response = await servable.infer_request(request)  # type: ignore[attr-defined]
                inputs_ready = inferred = time.perf_counter_ns()
            else:
                check_requested_outputs(servable.outputs, request.outputs)
                inputs = await resolve_pending(prepare_inputs(servable.inputs, request), self.max_image_decoded_bytes)
                inputs_ready = time.perf_counter_ns()
                if held is not None and held.outputs and entry.kind == "model":  # OpenVINO writes them in place
                    into = shared_memory.output_arrays(held, servable.outputs)
                    outputs = await servable.infer(inputs, request.outputs, into)  # type: ignore[call-arg]
                else:
                    outputs = await servable.infer(inputs, request.outputs)
                inferred = time.perf_counter_ns()
                response = InferResponse(request.model_name, str(entry.version), request.id, outputs)
        except ServingError:
            statistics.record_failure(started)
            raise
        finally:
            statistics.in_flight -= 1
        statistics.record_success(started, inputs_ready, inferred)
        return response

    async def model_statistics(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        """Statistics of the AVAILABLE versions of one model (every model when `name` is empty), or of the one
        version named; sorted by name and version. Under --grpc_workers, summed over the workers (and the counts of
        workers that have ended)."""
        rows = self._statistics_here(name, version)
        if self.peers is None:
            return rows
        totals = {(row.name, row.version): row.statistics.copy() for row in rows}
        # every worker answers with all its rows (this one's too, [0], which the supervisor keeps for when it ends)
        for others in (await self._everywhere_values({"method": "statistics"}))[1:]:
            for row_name, row_version, data in others:
                if (total := totals.get((row_name, row_version))) is not None:
                    total.merge(InferStatistics.from_dict(data))
        return [VersionStatistics(n, v, statistics) for (n, v), statistics in totals.items()]

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of the enabled metrics; under --grpc_workers, summed over the workers (and the
        counters of workers that have ended, so that no counter goes backwards)."""
        assert self.metrics is not None
        if self.peers is None:
            return self.metrics.exposition()
        return merge_expositions(await self._everywhere_values({"method": "metrics"})).encode()

    def _statistics_here(self, name: str, version: str) -> list[VersionStatistics]:
        if name and version:
            entry = self.repository.find_version(name, version, zero_is_default=False)
            check_available(entry)
            entries = [entry]
        else:
            models = [self.repository.get_model(name)] if name else self.repository.servables()
            entries = [
                entry
                for model in models
                for _, entry in sorted(model.versions.items())
                if entry.state == VersionState.AVAILABLE
            ]
        return [
            VersionStatistics(entry.model_name, str(entry.version), entry.servable.statistics)
            for entry in entries
            if entry.servable is not None
        ]

    def record(self, interface: str, method: str, name: str, version: str, ok: bool, started: float) -> None:
        """Count one front-end request (`started`: its `time.perf_counter()`) when metrics are enabled."""
        if self.metrics is not None:
            self.metrics.record(interface, method, name, version, ok, time.perf_counter() - started)

    async def observed(self, interface: str, method: str, name: str, version: str, call: Awaitable[T]) -> T:
        """Await a front end's `call` to this server, counting its outcome in the metrics."""
        started = time.perf_counter()
        try:
            result = await call
        except ServingError:
            self.record(interface, method, name, version, False, started)
            raise
        self.record(interface, method, name, version, True, started)
        return result

    async def reload(self) -> bool:
        """Apply the configuration again now (`POST /v1/config/reload`); True when anything changed."""
        return bool(await self._everywhere({"method": "reload"}))

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every version of every model, pipeline and graph with its state (the repository extension's index)."""
        return self._control().index(ready_only)

    async def load_model(self, name: str, parameters: dict[str, Any] | None = None, *, trusted: bool = False) -> None:
        """Load or reload one model, pipeline or graph (`parameters`: `config`, a model config override as JSON).
        A client's call (not `trusted`) is refused unless model control is allowed."""
        self._check_model_control(trusted)
        await self._everywhere(
            {"method": "load_model", "name": name, "parameters": parameters or {}, "confined": not trusted}
        )

    async def unload_model(self, name: str, parameters: dict[str, Any] | None = None, *, trusted: bool = False) -> None:
        """Retire one model, pipeline or graph once its requests in flight finish (`unload_dependents`: also the
        pipelines running it). A client's call (not `trusted`) is refused unless model control is allowed."""
        self._check_model_control(trusted)
        await self._everywhere({"method": "unload_model", "name": name, "parameters": parameters or {}})

    async def _everywhere(self, call: dict[str, Any]) -> Any:
        """Apply a control call here, or, under --grpc_workers, in every worker before answering; this worker's
        value."""
        if self.peers is None:
            return await self._apply(call)
        if "parameters" in call:  # a client's parameters may hold bytes: JSON carries their text
            call = {**call, "parameters": _plain(call["parameters"])}
        return (await self._everywhere_values(call))[0]

    async def _everywhere_values(self, call: dict[str, Any]) -> list[Any]:
        """Every worker's value of `call`, this worker's first. A failure in any worker is the answer (this worker's
        own first): the workers then do not all serve the same."""
        assert self.peers is not None
        outcomes = await self.peers.everywhere(call)
        failed = next((outcome for outcome in outcomes if not outcome["ok"]), None)
        if failed is not None:
            if outcomes[0]["ok"]:
                log.error("%s applied here but failed in another worker: %s", call["method"], failed["details"])
            raise ServingError(Status[failed["status"]], failed["details"])
        return [outcome["value"] for outcome in outcomes]

    async def apply(self, call: dict[str, Any]) -> dict[str, Any]:
        """Run a control call relayed by the supervisor (`pyovms.workers`); its outcome, errors included."""
        try:
            return {"ok": True, "value": await self._apply(call)}
        except ServingError as exc:
            return {"ok": False, "status": exc.status.name, "details": exc.details}
        except Exception:
            log.exception("%s failed", call.get("method"))
            return {"ok": False, "status": Status.INTERNAL_ERROR.name, "details": ""}

    async def _apply(self, call: dict[str, Any]) -> Any:
        method = call["method"]
        if method == "reload":
            return await self.reloader() if self.reloader is not None else False
        if method == "load_model":
            return await self._control().load(call["name"], call["parameters"], confined=call["confined"])
        if method == "unload_model":
            return await self._control().unload(call["name"], call["parameters"])
        if method == "register_shared_memory":
            return self._shared_memory().register(call["name"], call["key"], call["offset"], call["byte_size"])
        if method == "unregister_shared_memory":
            return self._shared_memory().unregister(call["name"])
        if method == "statistics":  # every available version's, for the worker that sums them
            return [[row.name, row.version, row.statistics.as_dict()] for row in self._statistics_here("", "")]
        if method == "metrics":
            return self.metrics.exposition().decode() if self.metrics is not None else ""
        raise ServingError(Status.INTERNAL_ERROR, f"unknown control call {method}")

    def _check_model_control(self, trusted: bool) -> None:
        if not (trusted or self.allow_model_control):
            raise ServingError(Status.MODEL_CONTROL_NOT_ENABLED, "start the server with --allow_model_control")

    def _control(self) -> RepositoryControl:
        if self.control is None:
            raise ServingError(Status.NOT_IMPLEMENTED, "the model repository extension is not set up")
        return self.control

    def model_statuses(self) -> dict[str, list[VersionStatus]]:
        """Every model's versions with their states, by model name (the status JSON of `GET /v1/config`)."""
        return {
            model.name: [
                VersionStatus(str(entry.version), entry.state.name, entry.error_code)
                for _, entry in sorted(model.versions.items())
            ]
            for model in self.repository.servables()
        }

    async def infer_stream(
        self, requests: AsyncIterator[InferRequest | ServingError]
    ) -> AsyncIterator[InferResponse | StreamError]:
        """ModelStreamInfer: a stream whose first request names a graph runs that graph (spec §6.3); any other
        stream answers each request as ModelInfer would, one response per request in their order (Triton's streams).

        `requests` may hold a `ServingError` for a message that did not parse. Yields responses, and `StreamError`s
        for requests answered in-stream; raises `ServingError` when the whole stream fails (the first request does not
        parse or names nothing served, or the graph fails)."""
        first = await anext(aiter(requests), None)
        if first is None:
            return
        if isinstance(first, ServingError):  # the first message did not parse
            raise first
        model = self.repository.lookup(first.model_name)
        if model is None:
            raise ServingError(Status.MEDIAPIPE_DEFINITION_NAME_MISSING, f"name: {first.model_name} is no servable")
        if model.kind != "graph":  # each request is ModelInfer's, shared memory included
            async for answer in self._answer_each(_prepend(first, requests)):
                yield answer
            return
        requests = self._shared_memory_snapshots(_prepend(first, requests))
        first = await anext(requests)
        if isinstance(first, ServingError):  # its regions could not be read
            raise first
        entry = self.repository.find_version(first.model_name, first.model_version, zero_is_default=True)
        check_available(entry)
        graph = entry.servable
        assert graph is not None
        graph.statistics.in_flight += 1
        try:
            async for item in graph.stream(first, requests):  # type: ignore[attr-defined]
                yield StreamError(item) if isinstance(item, ServingError) else item
        finally:
            graph.statistics.in_flight -= 1

    async def _answer_each(
        self, requests: AsyncIterator[InferRequest | ServingError]
    ) -> AsyncIterator[InferResponse | StreamError]:
        """One answer per request, in the requests' order, while up to STREAM_IN_FLIGHT of them run at once."""
        # Tasks in the requests' order; then None at the end of the requests, or the exception that ended them.
        answers: asyncio.Queue[asyncio.Task[InferResponse | StreamError] | Exception | None] = asyncio.Queue(
            STREAM_IN_FLIGHT
        )
        running: set[asyncio.Task[Any]] = set()

        async def start_each() -> None:
            try:
                async for request in requests:
                    task = asyncio.create_task(self._answer_one(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    await answers.put(task)  # waits while STREAM_IN_FLIGHT answers are not yet sent
            except Exception as exc:  # reading the client's requests failed
                await answers.put(exc)
            else:
                await answers.put(None)

        reader = asyncio.create_task(start_each())
        try:
            while (item := await answers.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield await item
        finally:
            reader.cancel()
            for task in running:
                task.cancel()

    async def _answer_one(self, request: InferRequest | ServingError) -> InferResponse | StreamError:
        if isinstance(request, ServingError):  # did not parse: no id to give back
            return StreamError(request, "")
        try:
            return await self.infer(request)
        except ServingError as exc:
            return StreamError(exc, request.id)
        except Exception:
            log.exception("ModelStreamInfer: request %r to %s failed", request.id, request.model_name)
            return StreamError(ServingError(Status.INTERNAL_ERROR), request.id)

    async def _shared_memory_snapshots(
        self, requests: AsyncIterator[InferRequest | ServingError]
    ) -> AsyncIterator[InferRequest | ServingError]:
        """Stream requests with their shared memory inputs read into bytes (a graph run keeps its packets after the
        request is answered, so the regions are not held); outputs in shared memory are refused in-stream."""
        async for item in requests:
            if isinstance(item, InferRequest) and shared_memory.named_by(item):
                try:
                    if any(shared_memory.REGION in p for p in item.output_parameters.values()):
                        raise ServingError(
                            Status.SHM_REQUEST_INVALID, "outputs in shared memory are not served on streams"
                        )
                    held = shared_memory.attach(self.shared_memory, item)
                    for tensor in item.inputs:
                        if isinstance(tensor.raw, memoryview):
                            tensor.raw = bytes(tensor.raw)
                    shared_memory.release(self.shared_memory, held)
                except ServingError as exc:
                    item = exc
            yield item


STREAM_IN_FLIGHT = 16
"""Requests of one model or pipeline stream that run at once; the next ones wait to be read (the client's flow
control holds them)."""


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


class Peers(Protocol):
    """The other processes of one server (`pyovms.workers.link.SupervisorLink`)."""

    async def everywhere(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        """Have every process apply `call`; the outcomes once all have, this process's first."""
        ...


def _plain(parameters: dict[str, Any]) -> dict[str, Any]:
    """A relayed call's parameters as JSON values (a bytes parameter, such as a config sent as bytes, as its
    text)."""
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in parameters.items()}
