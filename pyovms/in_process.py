"""pyovms inside a Python program: `pyovms.serve(...)` runs a whole server (the one the `pyovms` command runs) on a
thread of its own, and its methods call the same core the gRPC and REST front ends call.

The server's event loop lives on that thread: OpenVINO's infer requests, the custom node and Python node pools and
every asyncio object of the server belong to it. A synchronous call (`infer`) hands its coroutine to that loop and
waits; `infer_async` awaits it from the caller's own loop. Requests go through the same validation, statistics and
errors (`pyovms.ServingError`) as over the wire, and the server can expose itself on gRPC and REST ports too while
it runs. `stop()` (or leaving the `with` block) shuts it down as SIGTERM does and joins the thread; an interpreter
that exits with a server still running stops it first.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

import numpy as np

from .core import Server
from .errors import ServingError, Status
from .repository.config import ModelConfig
from .server import ServerRuntime, StartupError, _loop_factory
from .settings import Settings
from .tensors import datatypes
from .tensors.messages import (
    InferInput,
    InferRequest,
    ModelMetadata,
    RepositoryEntry,
    ServerMetadata,
    VersionStatistics,
)

T = TypeVar("T")

DEFAULT_START_TIMEOUT_S = 600.0
_MODEL_OPTIONS = {f.name for f in fields(ModelConfig)} - {"name", "base_path"}
_SETTINGS_OPTIONS = {f.name for f in fields(Settings)} - {"config_path", "model", "demo", "port", "rest_port"}


def serve(
    config_path: str | os.PathLike[str] | None = None,
    *,
    model_name: str | None = None,
    model_path: str | os.PathLike[str] | None = None,
    demo: bool = False,
    grpc_port: int = 0,
    rest_port: int = 0,
    bind_address: str = "127.0.0.1",
    settings: Settings | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT_S,
    **options: Any,
) -> InProcessServer:
    """Start a server in this process and return it once its initial load has finished (ready).

    Serve a config.json (`config_path`), one model (`model_name` and `model_path`, local or object storage), or the
    demo repository (`demo=True`). `grpc_port`/`rest_port` (0: none) expose the same server on the wire, bound to
    `bind_address`. Keyword `options` are the single model's config.json fields (`batch_size`, `shape`, `layout`,
    `nireq`, `plugin_config`, ...) or `Settings` fields (`file_system_poll_wait_seconds`, `cache_dir`,
    `metrics_enable`, ...). A complete `Settings` may be given instead of all of these.
    """
    if settings is None:
        settings = build_settings(
            config_path, model_name, model_path, demo, grpc_port, rest_port, bind_address, **options
        )
    elif config_path or model_name or model_path or demo or grpc_port or rest_port or options:
        raise ValueError("give either settings or the other arguments of serve(), not both")
    return InProcessServer(settings).start(start_timeout)


def build_settings(
    config_path: str | os.PathLike[str] | None,
    model_name: str | None,
    model_path: str | os.PathLike[str] | None,
    demo: bool,
    grpc_port: int,
    rest_port: int,
    bind_address: str,
    **options: Any,
) -> Settings:
    """The `Settings` that `serve`'s arguments describe; ValueError or TypeError for arguments that do not fit."""
    sources = [config_path is not None, model_name is not None or model_path is not None, demo]
    if sum(sources) != 1:
        raise ValueError("serve() needs exactly one of config_path, model_name with model_path, or demo=True")
    if (model_name is None) != (model_path is None):
        raise ValueError("model_name and model_path go together")
    unknown = set(options) - _MODEL_OPTIONS - _SETTINGS_OPTIONS
    if unknown:
        raise TypeError(f"serve() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    model_options = {k: v for k, v in options.items() if k in _MODEL_OPTIONS}
    if model_options and model_name is None:
        raise ValueError(f"{', '.join(sorted(model_options))}: model options go with model_name and model_path")
    model = None
    if model_name is not None:
        path = os.fspath(model_path)  # type: ignore[arg-type]
        base_path = path if "://" in path else os.path.abspath(os.path.expanduser(path))
        model = ModelConfig(name=model_name, base_path=base_path, **model_options)
    if config_path is not None and os.path.isdir(config_path):
        config_path = os.path.join(config_path, "config.json")
    settings = Settings(
        port=grpc_port,
        rest_port=rest_port,
        grpc_bind_address=[bind_address],
        rest_bind_address=[bind_address],
        config_path=os.fspath(config_path) if config_path is not None else None,
        model=model,
        demo=demo,
    )
    return replace(settings, **{k: v for k, v in options.items() if k in _SETTINGS_OPTIONS})


class InProcessServer:
    """A server running on a thread of this process; build it with `pyovms.serve`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runtime: ServerRuntime | None = None
        self._stop_requested: asyncio.Event | None = None

    # ------------------------------------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = DEFAULT_START_TIMEOUT_S) -> InProcessServer:
        """Start the server thread and wait until the initial load has finished; StartupError when it cannot
        start (the configuration is refused, a port is taken)."""
        if self._thread is not None:
            raise RuntimeError("this server was already started")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="pyovms-server", daemon=True)
        self._thread.start()
        try:
            started.result(timeout)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        with asyncio.Runner(loop_factory=_loop_factory(self.settings.event_loop)) as runner:
            runner.run(self._main(started))

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        runtime = ServerRuntime(self.settings)
        try:
            await runtime.start()
            self._runtime = runtime
            await runtime.loaded()
        except BaseException as exc:
            await runtime.stop(0)
            started.set_exception(exc)
            return
        started.set_result(None)
        await self._stop_requested.wait()
        await runtime.stop(self.settings.shutdown_grace_s)

    def stop(self) -> None:
        """Shut down as SIGTERM does (requests in flight get `shutdown_grace_s` seconds) and join the thread."""
        atexit.unregister(self.stop)
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or not thread.is_alive():
            return
        if threading.current_thread() is thread:
            raise RuntimeError("stop() was called from the server's own thread")
        if loop is not None and stop_requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join()

    def __enter__(self) -> InProcessServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._runtime is not None

    @property
    def grpc_address(self) -> str | None:
        """host:port of the gRPC API, when the server exposes one."""
        port = self.settings.port
        return f"{self.settings.grpc_bind_address[0]}:{port}" if port else None

    @property
    def rest_address(self) -> str | None:
        """host:port of the REST API, when the server exposes one."""
        port = self.settings.rest_port
        return f"{self.settings.rest_bind_address[0]}:{port}" if port else None

    # ------------------------------------------------------------------------------------------------ calls

    @property
    def _core(self) -> Server:
        runtime = self._runtime
        if runtime is None or runtime.server is None or not self.running:
            raise RuntimeError("the server is not running")
        return runtime.server

    def _call(self, coroutine: Awaitable[T], timeout: float | None = None) -> T:
        """Run `coroutine` on the server's loop and wait for its result here."""
        if threading.current_thread() is self._thread:
            _close(coroutine)
            raise RuntimeError("a blocking call from the server's own thread would wait forever: await the async form")
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    async def _call_async(self, coroutine: Awaitable[T]) -> T:
        """Await `coroutine` on the server's loop from the caller's loop (directly, when they are the same)."""
        if asyncio.get_running_loop() is self._loop:
            return await coroutine
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))  # type: ignore[arg-type]

    def live(self) -> bool:
        return self.running and self._core.live()

    def ready(self) -> bool:
        return self.running and self._core.ready()

    def metadata(self) -> ServerMetadata:
        return self._core.metadata()

    def model_ready(self, name: str, version: str | int = "") -> bool:
        """Whether the version (default: the default one) is available; ServingError for an unknown name."""
        return self._call(self._core.model_ready(name, str(version)))

    def model_metadata(self, name: str, version: str | int = "") -> ModelMetadata:
        return self._call(self._core.model_metadata(name, str(version)))

    def statistics(self, name: str = "", version: str | int = "") -> list[VersionStatistics]:
        """Triton's statistics of the available versions (of one model or version, when named)."""
        return self._call(self._core.model_statistics(name, str(version)))

    def reload(self) -> bool:
        """Apply config.json and the version directories now (as `POST /v1/config/reload`); True if anything
        changed."""
        return self._call(self._core.reload())

    def repository_index(self, ready: bool = False) -> list[RepositoryEntry]:
        """Every version of every model, pipeline and graph with its state (READY, LOADING, UNLOADING,
        UNAVAILABLE), then the repository directories nothing serves; only READY ones when `ready`."""
        return self._call(self._async(self._core.repository_index, ready))

    def load_model(self, name: str, config: Mapping[str, Any] | str | None = None) -> None:
        """Load or reload `name` (a configured name, or a directory of the repository root); `config` replaces a
        model's configuration (OVMS's model `config` object; its base_path may be anywhere: this program owns the
        server). Returns once it is loaded; ServingError otherwise."""
        parameters = {} if config is None else {"config": config if isinstance(config, str) else json.dumps(config)}
        self._call(self._core.load_model(name, parameters, trusted=True))

    def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        """Retire `name` (and with `unload_dependents` the pipelines running it); returns once the requests running
        on it have finished."""
        self._call(self._core.unload_model(name, {"unload_dependents": unload_dependents}, trusted=True))

    @staticmethod
    async def _async(function: Callable[..., T], *args: Any) -> T:
        return function(*args)

    def infer(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        version: str | int = "",
        outputs: Sequence[str] = (),
        parameters: Mapping[str, Any] | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run one inference on the model, pipeline or graph `name`: inputs by name (numpy arrays, or anything
        numpy reads; bytes or strings for BYTES inputs, JPEG/PNG files included), outputs by name (all, or the
        ones named in `outputs`) as read-only numpy arrays. ServingError as over the wire."""
        request = build_request(name, inputs, version, outputs, parameters, request_id)
        return _output_arrays(self._call(self._core.infer(request), timeout))

    async def infer_async(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        version: str | int = "",
        outputs: Sequence[str] = (),
        parameters: Mapping[str, Any] | None = None,
        request_id: str = "",
    ) -> dict[str, np.ndarray]:
        """`infer` for asyncio code: awaitable from any event loop."""
        request = build_request(name, inputs, version, outputs, parameters, request_id)
        return _output_arrays(await self._call_async(self._core.infer(request)))


def build_request(
    name: str,
    inputs: Mapping[str, Any],
    version: str | int = "",
    outputs: Sequence[str] = (),
    parameters: Mapping[str, Any] | None = None,
    request_id: str = "",
) -> InferRequest:
    """An `InferRequest` over the caller's arrays: numbers are passed as views of their memory (a copy only for a
    non-contiguous array or a big-endian dtype), strings and bytes framed as KServe BYTES."""
    tensors_in = [_input(input_name, value) for input_name, value in inputs.items()]
    return InferRequest(
        model_name=name,
        model_version=str(version),
        id=request_id,
        inputs=tensors_in,
        outputs=list(outputs),
        parameters=dict(parameters or {}),
        raw_input_count=len(tensors_in),
    )


def _input(name: str, value: Any) -> InferInput:
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    if array.dtype.kind in "SUO":
        datatype, raw = datatypes.encode_array(array)
        return InferInput(name, datatype, tuple(array.shape), raw=raw)
    try:
        datatype = datatypes.from_numpy(array.dtype)
    except ValueError as exc:
        raise ServingError(Status.INVALID_PRECISION, f"{exc}; input name: {name}") from exc
    little_endian = datatypes.DATATYPES[datatype].dtype
    contiguous = np.ascontiguousarray(array, dtype=little_endian)
    return InferInput(name, datatype, tuple(array.shape), raw=contiguous.reshape(-1).view(np.uint8).data)


def _output_arrays(response: Any) -> dict[str, np.ndarray]:
    return {output.name: output.as_numpy() for output in response.outputs}


def _close(coroutine: Awaitable[Any]) -> None:
    close = getattr(coroutine, "close", None)
    if close is not None:
        close()


__all__ = ["InProcessServer", "ServingError", "StartupError", "build_request", "serve"]
