"""Process wiring: logging, the repository, the gRPC and REST servers, signals, start-up and shutdown.

Start-up order follows OVMS: the gRPC server answers (live, not ready) before models load; ServerReady turns
true when the initial load finishes, whatever the outcome of each model.

Shutdown (SIGTERM, SIGINT) keeps answering while load balancers move away: readiness turns false at once, both ports
stay open and serve every request, new connections too, until no client connection is left or the grace period ends;
then the servers close (requests still running are cut off) and the models retire.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .control.config_watcher import Configs, ConfigWatcher, sections_of, with_subconfig_models
from .control.model_manager import ModelManager
from .control.repository_extension import RepositoryControl
from .core import Server
from .errors import ServingError, Status
from .frontends.access import AccessPolicy
from .frontends.grpc.service import start_grpc_server
from .frontends.rest.server import RestApi, RestServer, start_rest_server
from .observability.logs import configure_logging
from .observability.metrics import Metrics, parse_metrics_list
from .repository.config import GRAPH_FILE, GraphEntry, load_config
from .repository.registry import Repository
from .scheduling.infer_requests import PoolSettings
from .servables.openvino_core import ExtensionError, make_core
from .settings import Settings
from .tensors.shared_memory import SharedMemoryRegistry
from .workers.cores import pin_event_loop
from .workers.link import SupervisorLink, is_worker, worker_cores
from .workers.supervisor import supervise

log = logging.getLogger("pyovms.server")

SERVED_SECTIONS = ("pipeline_config_list", "custom_node_library_config_list", "monitoring")


def _configs(settings: Settings) -> tuple[Configs, dict]:
    """The models, pipelines and custom node libraries to serve (config.json, single-model flags or the demo), and
    config.json's `monitoring.metrics` section."""
    if settings.demo:
        from .repository.demo import SAMPLE_IMAGE, build_demo_repository, default_demo_dir

        if is_worker():  # the supervisor built it
            return (load_config(default_demo_dir() / "config.json").models, [], [], []), {}
        config_path = build_demo_repository()
        log.info(
            "Demo repository built in %s (a sample image: %s)", config_path.parent, config_path.parent / SAMPLE_IMAGE
        )
        return (load_config(config_path).models, [], [], []), {}
    if settings.config_path:
        config = load_config(settings.config_path)
        for section in config.extra:
            if section not in SERVED_SECTIONS:
                log.warning("config section %s is accepted but not served yet", section)
        return sections_of(config, settings.config_path), config.extra.get("monitoring", {}).get("metrics", {})
    model = settings.model
    assert model is not None
    if (Path(model.base_path) / GRAPH_FILE).is_file():  # single-graph mode
        graph = GraphEntry.from_json({"name": model.name, "base_path": model.base_path}, Path.cwd())
        return (with_subconfig_models([], [graph]), [], [], [graph]), {}
    return ([model], [], [], []), {}


def _metrics(settings: Settings, monitoring: dict, repository: Repository) -> Metrics | None:
    """The metrics the flags or config.json's `monitoring` section enable (raise ServingError for a bad list)."""
    enable = settings.metrics_enable or bool(monitoring.get("enable"))
    names = settings.metrics_list or ",".join(monitoring.get("metrics_list", []))
    if names and not enable:
        raise ServingError(Status.INVALID_METRICS_LIST, "metrics_list is set but metrics are not enabled")
    if not enable:
        return None
    if not settings.rest_port:
        raise ServingError(Status.INVALID_METRICS_LIST, "metrics are served on the REST port: set rest_port")
    return Metrics(repository, parse_metrics_list(names))


def _log_started(kind: str, port: int, addresses: list[str], settings: Settings) -> None:
    tls = "" if settings.tls is None else " with mutual TLS" if settings.tls.client_ca else " with TLS"
    log.info("Started %s server on port %d (%s)%s", kind, port, ",".join(addresses), tls)


def _warn_not_served(settings: Settings) -> None:
    """One WARNING per accepted flag that has no effect, and for an API key OVMS would read that pyovms does not."""
    for name, why in settings.unused_flags.items():
        log.warning("--%s has no effect in pyovms: %s", name, why)
    if os.environ.get("API_KEY") and settings.api_key is None:
        log.warning("The API_KEY environment variable is not read: give the key with --api_key_file to require it")


def _log_access(settings: Settings) -> None:
    """What is closed, by header name only (values and the key are never logged)."""
    if settings.api_key is not None:
        log.info("API key required on every call but liveness and readiness (Authorization: Bearer)")
    for wire, restrictions in (("gRPC", settings.grpc_restrictions), ("REST", settings.rest_restrictions)):
        for group, restriction in restrictions.items():
            log.info("%s group %s is restricted: header %s", wire, group.value, restriction.header)


class StartupError(Exception):
    """The server cannot start: a configuration it refuses, or a port it cannot bind (the message says which)."""


class ServerRuntime:
    """One server with its front ends: the repository and the model manager filling it, the core `Server`, the
    configuration watcher, and the gRPC and REST servers the settings ask for. The `pyovms` command runs one until a
    signal (`serve`); `pyovms.serve` runs one on a thread of its own (`in_process.py`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.manager: ModelManager | None = None
        self.watcher: ConfigWatcher | None = None
        self._grpc_server: Any = None
        self._rest_server: RestServer | None = None
        self._loader: asyncio.Task[None] | None = None
        self._link: SupervisorLink | None = None
        """A --grpc_workers worker's channel to its supervisor."""
        self._loaded = asyncio.Event()

    async def start(self) -> None:
        """Check the configuration, start the front ends (live, not ready yet) and begin loading; StartupError when
        the server cannot start. `loaded` tells when the initial load has finished."""
        settings = self.settings
        try:
            configs, monitoring = _configs(settings)
        except ServingError as exc:
            raise StartupError(f"Couldn't start model manager: {exc.message}") from exc
        if not is_worker():  # a supervisor of workers warned already
            _warn_not_served(settings)
        _log_access(settings)
        repository = Repository(PoolSettings(settings.inline_threshold_us * 1e-6, settings.max_queued_requests))
        try:
            core = make_core(settings.cpu_extension)
        except ExtensionError as exc:
            raise StartupError(str(exc)) from exc
        self.manager = ModelManager(
            repository,
            core,
            cache_dir=_cache_dir(settings),
            storage_timeout_s=settings.storage_timeout_s,
            poll_s=settings.file_system_poll_wait_seconds or 1.0,
            inference_threads=settings.inference_threads,
        )
        server = self.server = Server(repository, settings.max_image_decoded_bytes)
        self._link = SupervisorLink.from_environment()
        if self._link is not None:
            server.every_worker_ready = False
            server.peers = self._link
            await self._link.start(self._every_worker_ready, server.apply)
        try:
            server.metrics = _metrics(settings, monitoring, repository)
        except ServingError as exc:
            raise StartupError(f"Couldn't start model manager: {exc.message}") from exc
        watcher = self.watcher = ConfigWatcher(self.manager, configs, settings.config_path)
        server.reloader = lambda: watcher.reload(strict=True)
        remote_root = settings.model_repository_path if "://" in (settings.model_repository_path or "") else None
        server.control = RepositoryControl(repository, watcher, _repository_root(settings), remote_root)
        server.allow_model_control = settings.allow_model_control
        if settings.allow_model_control:
            log.info("Model control is enabled: clients may load and unload models")
        if settings.allow_client_shm:
            server.shared_memory = SharedMemoryRegistry(settings.shm_max_regions, settings.shm_max_bytes)
            log.info("System shared memory is enabled: clients may register regions of /dev/shm")
        if settings.port:
            try:
                self._grpc_server = await start_grpc_server(
                    server,
                    settings.port,
                    settings.grpc_bind_address,
                    settings.grpc_max_message_size,
                    settings.grpc_channel_arguments,
                    share_port=settings.grpc_workers > 1,
                    tls=settings.tls,
                    access=AccessPolicy(settings.grpc_restrictions, settings.api_key),
                )
            except OSError as exc:
                raise StartupError(f"Failed to start gRPC server: {exc}") from exc
            _log_started("gRPC", settings.port, settings.grpc_bind_address, settings)
        if settings.rest_port:
            access = AccessPolicy(settings.rest_restrictions, settings.api_key)
            api = RestApi(server, settings.cors, settings.rest_max_body_size, access)
            try:
                self._rest_server = await start_rest_server(
                    api, settings.rest_port, settings.rest_bind_address, share_port=settings.grpc_workers > 1,
                    tls=settings.tls,
                )  # fmt: skip
            except OSError as exc:
                await self._stop_front_ends(0)
                raise StartupError(f"Failed to start REST server: {exc}") from exc
            _log_started("REST", settings.rest_port, settings.rest_bind_address, settings)
        if (cores := worker_cores()) is not None:  # after gRPC started its threads, which stay free
            pin_event_loop(cores)
        self._loader = asyncio.create_task(self._initial_load(configs))

    async def _initial_load(self, configs: Configs) -> None:
        assert self.manager is not None and self.server is not None and self.watcher is not None
        try:
            await self.manager.load(*configs)
            self.server.set_ready(True)
            log.info("Server ready: initial load of %d model(s) finished", len(configs[0]))
            if self._link is not None:
                self._link.notify_ready()
        finally:
            self._loaded.set()
        if self.settings.file_system_poll_wait_seconds > 0:
            await self.watcher.watch(self.settings.file_system_poll_wait_seconds)

    def _every_worker_ready(self, ready: bool) -> None:
        """The supervisor's word on the other workers: this worker answers ready only when every worker is."""
        assert self.server is not None
        if ready != self.server.every_worker_ready:
            self.server.every_worker_ready = ready
            if ready:
                log.info("Every gRPC worker is ready: this worker answers ready")
            else:
                log.info("A gRPC worker is not ready: this worker answers not ready until it is")

    async def loaded(self) -> None:
        """Wait until the initial load has finished (ServerReady turns true then, whatever each model's outcome)."""
        await self._loaded.wait()

    async def stop(self, grace_s: float) -> None:
        """Turn not ready and go on serving until the clients have left or `grace_s` seconds have passed, close the
        front ends, retire every servable and wait for inferences still running in OpenVINO."""
        deadline = time.monotonic() + grace_s
        if self.server is not None:
            self.server.set_ready(False)
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader
        await _clients_gone(self._ports(), grace_s, "the grace period ended")
        await self._stop_front_ends(max(0.0, deadline - time.monotonic()))
        if self.manager is not None:
            retired = self.manager.unload()
            # Requests cut off by the grace period may leave inferences running in OpenVINO: let them end first.
            await asyncio.to_thread(lambda: [model.pool.wait_finished() for model in retired])
        if self.server is not None and self.server.shared_memory is not None:
            self.server.shared_memory.unregister()
        await _clients_gone(self._ports(), DRAIN_S, "the servers stopped")
        self._grpc_server = self._rest_server = None
        if self._link is not None:
            await self._link.close()

    def _ports(self) -> set[int]:
        return {port for port in (self.settings.port, self.settings.rest_port) if port}

    async def _stop_front_ends(self, grace_s: float) -> None:
        stopping = []
        if self._grpc_server is not None:
            stopping.append(self._grpc_server.stop(grace_s))
        if self._rest_server is not None:
            stopping.append(self._rest_server.stop(grace_s))
        await asyncio.gather(*stopping)


DRAIN_S = 1.0
"""How long a stopped server waits for its clients to close their connections (see `_clients_gone`)."""
DRAIN_POLL_S = 0.01


async def _clients_gone(ports: set[int], limit_s: float, after: str) -> None:
    """Wait, at most `limit_s`, until no client connection to `ports` is open. Used twice at shutdown: while the
    servers still serve (the grace period: a client connected may still send), and after they stopped (they have
    sent their last answers and told clients to go, but a process that exits while a client's last frames, an HTTP/2
    window update or ping, are still unread resets the connection, and the client loses an answer it was still
    receiving). Linux only (elsewhere there is nothing to read, and no wait)."""
    deadline = time.monotonic() + limit_s
    while ports and (still_open := _established(ports)):
        if time.monotonic() >= deadline:
            log.info("%d client connection(s) still open when %s", still_open, after)
            return
        await asyncio.sleep(DRAIN_POLL_S)


def _established(ports: set[int]) -> int:
    """Established TCP connections whose local port is one of `ports` (this network namespace's tables)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rpartition(":")[2], 16) in ports:  # 01: ESTABLISHED
                count += 1
    return count


async def serve(settings: Settings) -> int:
    """Run the server until SIGINT or SIGTERM; return the exit status."""
    runtime = ServerRuntime(settings)
    try:
        await runtime.start()
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.info("Event loop: %s", type(loop).__module__.split(".")[0])
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info(
        "Shutting down: not ready; serving until the clients have left, for %.1f s at most (a second SIGINT or SIGTERM "
        "stops at once)",
        settings.shutdown_grace_s,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stop_at_once, signum)
    await runtime.stop(settings.shutdown_grace_s)
    return 0


def _stop_at_once(signum: int) -> None:
    """A second signal during the grace period: requests still in flight are dropped, the process exits now."""
    log.warning("%s again during the grace period: stopping at once", signal.Signals(signum).name)
    logging.shutdown()
    os._exit(128 + signum)


def run(settings: Settings, argv: list[str]) -> int:
    """Serve in this process, or supervise `--grpc_workers` processes running the same `argv`."""
    configure_logging(settings.log_level, settings.library_log_level, settings.log_path)
    _report_crashes()
    if settings.grpc_workers > 1 and not is_worker():
        _warn_not_served(settings)
        return supervise(settings, argv)
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        return runner.run(serve(settings))


def _repository_root(settings: Settings) -> Path | None:
    """Where explicit loads look for a name that nothing configures: `--model_repository_path`, else config.json's
    directory."""
    if settings.model_repository_path:
        if "://" in settings.model_repository_path:
            return None
        return Path(settings.model_repository_path).resolve()
    if settings.config_path:
        return Path(settings.config_path).resolve().parent
    return None


DEFAULT_CACHE_DIR = "/opt/cache"


def _cache_dir(settings: Settings) -> str | None:
    """The compiled-model cache: `--cache_dir`, else `/opt/cache` when that directory exists (OVMS's rule)."""
    cache_dir = settings.cache_dir or (DEFAULT_CACHE_DIR if os.path.isdir(DEFAULT_CACHE_DIR) else None)
    if cache_dir is None:
        return None
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.error("Model cache is disabled: %s: %s", cache_dir, exc)
        return None
    if not os.access(cache_dir, os.W_OK):
        log.error("Model cache is disabled: %s is not writable", cache_dir)
        return None
    log.info("Model cache is enabled: %s", cache_dir)
    return cache_dir


def _report_crashes() -> None:
    """A fatal signal (a C custom node library that crashes, say) writes every thread's Python stack to the log
    before the process ends, so the log shows which node was running."""
    handler = logging.getLogger().handlers[0]
    stream = getattr(handler, "stream", None)
    faulthandler.enable(file=stream if hasattr(stream, "fileno") else sys.stderr, all_threads=True)


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when chosen or, for "auto", installed: it cuts the per-request cost of the event loop (about
    10 % more requests per second on the tiny model). None: asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop
