"""Building servables: loading the models, custom node libraries, pipelines and graphs a configuration names into
the repository, and applying a changed configuration (spec §4.4) without stopping what still serves.

Loading runs in worker threads so the event loop keeps answering. Model directories may be local or in object storage
(`pyovms/repository/remote_storage.py`). Each model is updated on its own: a timed step waits at most one poll period
for the updates it starts, and one that takes longer (a slow storage, a large download) goes on in the background, its
model left out of the next steps until it ends. A model whose storage fails or does not answer in time is tried again
after a delay that doubles with each failure (up to a minute).

Pipelines and graphs are built over the repository's models, so this module sits above `pyovms/servables/`
(`pipelines/`, `graphs/`), which only read the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import openvino as ov

from ..custom_nodes.interface import Library, LibraryConfig, file_signature
from ..custom_nodes.loader import load_library
from ..errors import ServingError, Status, redact_paths
from ..repository.config import GraphEntry, ModelConfig
from ..repository.registry import Model, ModelVersion, Repository, VersionState
from ..repository.remote_storage import DEFAULT_TIMEOUT_S, Listing, RemoteModelDirectory, is_remote
from ..repository.version_policy import VersionPolicy
from ..servables.graphs.graph import Graph
from ..servables.openvino_core import make_core
from ..servables.openvino_model import OpenVinoModel
from ..servables.pipelines.config import PipelineConfig
from ..servables.pipelines.loading import build_pipeline
from ..servables.pipelines.pipeline import Pipeline

log = logging.getLogger("pyovms.model_manager")

RETRY_MAX_S = 60.0
"""The longest delay between two attempts to reach a model's storage after failures."""


def version_directories(base_path: Path) -> list[int]:
    """Positive integer subdirectories of a model directory; a single model file is version 1."""
    if base_path.is_file():
        return [1]
    if not base_path.is_dir():
        raise ServingError(Status.PATH_INVALID, str(base_path))
    versions = []
    for entry in base_path.iterdir():
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0:
            versions.append(int(entry.name))
    return sorted(versions)


class ModelManager:
    """Loads what the configuration names into a `Repository`, and applies a changed configuration to it."""

    def __init__(
        self,
        repository: Repository | None = None,
        core: ov.Core | None = None,
        cache_dir: str | None = None,
        storage_timeout_s: float = DEFAULT_TIMEOUT_S,
        poll_s: float = 1.0,
        inference_threads: int | None = None,
    ) -> None:
        self.repository = repository or Repository()
        self.core = core or make_core()
        if inference_threads is not None:  # compile-time properties (a model's plugin_config) override both
            # A --grpc_workers worker: its share of the cores. Its event loop is pinned to that share, and OpenVINO,
            # seeing the process restricted, would pin its own threads there too; they stay free instead.
            self.core.set_property("CPU", {"INFERENCE_NUM_THREADS": inference_threads, "ENABLE_CPU_PINNING": False})
            log.info("OpenVINO uses %d CPU threads in this process (INFERENCE_NUM_THREADS)", inference_threads)
        self.cache_dir = cache_dir
        """OpenVINO's compiled-model cache for the models OVMS caches (`--cache_dir`); None: off."""
        self.storage_timeout_s = storage_timeout_s
        self.poll_s = poll_s
        """The poll period: how long a timed step waits for its updates, and the first delay before a model whose
        storage failed is tried again."""
        self._updates: dict[str, asyncio.Task[bool]] = {}
        """Model updates that outlived the step that started them, by model name."""
        self._late: set[str] = set()
        """Models changed by such an update since the last step (the next step rebuilds what runs them)."""
        self._retries: dict[str, tuple[int, float]] = {}
        """Models whose storage failed: failures in a row, and when (time.monotonic) to try again."""
        self._graph_sources: dict[str, tuple[GraphEntry, str]] = {}
        """The entry and graph.pbtxt text each loaded graph was built from (a reload rebuilds it when they change)."""
        self._failed_files: dict[str, tuple[str, tuple[int, ...] | None]] = {}
        """The path and file signature of each library's last failed load: tried again only once they change."""
        self._pipeline_configs: list[PipelineConfig] = []
        self._remote: dict[str, RemoteModelDirectory] = {}
        """Model directories in object storage, by URL (each keeps its client and local cache)."""
        self._remote_errors: dict[str, str] = {}
        """The last listing error of each remote model (logged once, not at every poll)."""

    async def load(
        self,
        configs: list[ModelConfig],
        pipelines: Sequence[PipelineConfig] = (),
        libraries: Sequence[LibraryConfig] = (),
        graphs: Sequence[GraphEntry] = (),
    ) -> None:
        """Load every configured model and custom node library, then build the pipelines and graphs over them; a
        model, library, pipeline or graph that fails leaves the others serving."""
        for config in configs:
            model = Model(config.name, config)
            self.repository.models[config.name] = model
        await asyncio.gather(*(self._load_model(self.repository.models[c.name]) for c in configs))
        self._load_libraries(libraries)
        for pipeline in pipelines:
            self._load_pipeline(pipeline)
        self._pipeline_configs = list(pipelines)
        await self._reload_graphs(graphs)

    def _load_libraries(self, libraries: Sequence[LibraryConfig]) -> set[str]:
        """Load the custom node libraries that are new, whose `base_path` changed or whose file changed on disk, and
        forget the ones no longer configured; the names of those that changed. A library that fails is logged and
        left out (its pipelines report why); one that fails to load again keeps its loaded version serving."""
        changed = set()
        wanted = {library.name for library in libraries}
        for name in [*self.repository.libraries, *self.repository.library_failures]:
            if name not in wanted:
                changed.add(name)
                self.repository.libraries.pop(name, None)
                self.repository.library_failures.pop(name, None)
                self._failed_files.pop(name, None)
        for config in libraries:
            current = self.repository.libraries.get(config.name)
            if current is not None and _unchanged(current, config):
                continue
            attempt = (config.base_path, file_signature(config.base_path))
            if self._failed_files.get(config.name) == attempt:
                continue
            try:
                library = load_library(config, current)
            except ServingError as exc:
                log.error("Custom node library %s not loaded: %s", config.name, exc.message)
                self._failed_files[config.name] = attempt
                if current is None:
                    self.repository.library_failures[config.name] = exc
                    changed.add(config.name)
                continue
            self.repository.libraries[config.name] = library
            self.repository.library_failures.pop(config.name, None)
            self._failed_files.pop(config.name, None)
            changed.add(config.name)
            if current is not None:
                log.info("Custom node library %s reloaded from %s", config.name, config.base_path)
        return changed

    def _load_pipeline(self, config: PipelineConfig) -> None:
        if config.name in self.repository.models:
            log.error("Pipeline %s is not loaded: %s", config.name, Status.PIPELINE_NAME_OCCUPIED.message)
            return
        if config.name in self.repository.pipelines:
            log.error("Pipeline %s is defined more than once; only the first definition is loaded", config.name)
            return
        entry = ModelVersion(config.name, 1, kind="pipeline")
        self.repository.pipelines[config.name] = Model(config.name, None, {1: entry}, kind="pipeline")
        try:
            entry.servable = build_pipeline(config, self.repository)
        except ServingError as exc:
            # A model it needs is not available: the reason alone, after "Pipeline is not loaded yet".
            failure = exc.details if exc.status == Status.PIPELINE_DEFINITION_NOT_LOADED_YET else exc.message
            entry.failure = redact_paths(failure)
            entry.set_state(VersionState.LOADING, "FAILED_PRECONDITION")
            log.error("Pipeline %s is not available: %s", config.name, failure)
            return
        entry.set_state(VersionState.AVAILABLE)
        log.info("Loaded pipeline %s", config.name)

    async def _reload_graphs(self, entries: Sequence[GraphEntry], force: Collection[str] = ()) -> bool:
        """Load new graphs, rebuild those whose entry or graph.pbtxt changed (or that `force` names), retire the ones
        no longer configured; True when anything changed. A rebuilt graph keeps serving until its replacement has
        loaded."""
        changed = False
        wanted = {entry.name: entry for entry in entries}
        for name, model in list(self.repository.graphs.items()):
            if name not in wanted and model.versions[1].state != VersionState.END:
                self._retire_graph(model)
                changed = True
        for entry in entries:
            if entry.name in self.repository.models or entry.name in self.repository.pipelines:
                log.error("Graph %s is not loaded: %s", entry.name, Status.MEDIAPIPE_GRAPH_NAME_OCCUPIED.message)
                continue
            text = _read_text(entry.graph_path)
            current = self.repository.graphs.get(entry.name)
            unchanged = self._graph_sources.get(entry.name) == (entry, text) and entry.name not in force
            if current is not None and unchanged and current.versions[1].state != VersionState.END:
                continue
            changed = await self._load_graph(entry, text) or changed
        return changed

    async def _load_graph(self, entry: GraphEntry, text: str) -> bool:
        version = ModelVersion(entry.name, 1, kind="graph")
        fresh = Model(entry.name, None, {1: version}, kind="graph")
        version.set_state(VersionState.LOADING)
        try:
            version.servable = await Graph.load(entry.name, Path(entry.graph_path), self.repository)
        except ServingError as exc:
            version.failure = redact_paths(exc.message, [Path(entry.base_path).parent])
            version.set_state(VersionState.LOADING, "FAILED_PRECONDITION")
            log.error("Graph %s is not available: %s", entry.name, exc.message)
        else:
            version.set_state(VersionState.AVAILABLE)
            log.info("Loaded graph %s", entry.name)
        old = self.repository.graphs.get(entry.name)
        self.repository.graphs[entry.name] = fresh
        self._graph_sources[entry.name] = (entry, text)
        if old is not None and old.versions[1].state == VersionState.AVAILABLE:
            self._retire_graph(old)
        return True

    def _retire_graph(self, model: Model) -> None:
        entry = model.versions[1]
        graph = entry.servable
        _retire(entry)
        if graph is not None:
            graph.unload()  # type: ignore[attr-defined]

    async def _load_model(self, model: Model) -> bool:
        """Bring the model's versions in line with its policy and version directories: load the versions the
        policy selects (falling back below ones that fail, as OVMS does) and retire the others. True when a
        version was loaded or retired."""
        config = model.config
        assert config is not None
        remote = self._remote_directory(config.base_path)
        listing: dict[int, Listing] = {}
        base_path = Path(config.base_path)
        try:
            try:
                policy = VersionPolicy.parse(config.model_version_policy)
            except ValueError as exc:
                raise ServingError(Status.MODEL_VERSION_POLICY_WRONG_FORMAT, str(exc)) from exc
            if remote is not None:
                listing = await self._list_remote(model, remote)
                on_disk = sorted(listing)
            else:
                if not config.base_path or "://" in config.base_path:
                    raise ServingError(Status.PATH_INVALID, config.base_path or "base_path is not set")
                on_disk = version_directories(base_path)
            if not on_disk and not model.versions:
                raise ServingError(Status.NO_MODEL_VERSION_AVAILABLE, config.base_path)
        except ServingError as exc:
            if not model.versions:
                failure = redact_paths(exc.message, [base_path.parent])
                if model.failure != failure:  # once per distinct error, not at every poll
                    log.error("model %s not loaded: %s", model.name, exc)
                model.failure = failure
                return False
            if remote is not None:  # storage unreachable: what is loaded keeps serving, a later poll retries
                return False
            on_disk = []  # the directory is gone: every version retires
        changed = False
        model.failure = ""
        # A version that failed is not tried again, unless its objects in storage changed (an upload in steps).
        failed = {v for v, e in model.versions.items() if e.load_failed and listing.get(v, e.source) == e.source}
        remaining = [v for v in on_disk if v not in failed]
        while True:
            selected = set(policy.select(remaining))
            to_load = [
                v
                for v in sorted(selected)
                if v not in model.versions
                or model.versions[v].state == VersionState.END
                or model.versions[v].load_failed
            ]
            if not to_load:
                break
            for version in to_load:
                model.versions[version] = ModelVersion(model.name, version, source=listing.get(version))
            results = await asyncio.gather(*(self._load_version(model, v, base_path, remote) for v in to_load))
            changed = True
            newly_failed = [v for v, ok in zip(to_load, results, strict=True) if not ok]
            if not newly_failed:
                break
            # The policy is applied again without the failed versions: `latest 1` falls back to the next one.
            remaining = [v for v in remaining if v not in newly_failed]
        for version, entry in model.versions.items():
            if version not in selected and entry.state == VersionState.AVAILABLE:
                _retire(entry)
                changed = True
        return changed

    async def reload(
        self,
        configs: list[ModelConfig],
        pipelines: Sequence[PipelineConfig] = (),
        libraries: Sequence[LibraryConfig] = (),
        graphs: Sequence[GraphEntry] = (),
        force: Collection[str] = (),
        wait: bool = True,
    ) -> bool:
        """Apply a configuration again (spec §4.4): add new models, retire removed ones, reload a model whose
        configuration changed (its old versions serve until the new ones are loaded), rescan every model's version
        directories, then rebuild the pipelines. The models, pipelines and graphs named in `force` are loaded again
        even when unchanged (an explicit load). True when anything changed.

        `wait`: wait for every model's update (a client's reload or load); else (the timer) wait at most one poll
        period and leave slower updates running, picked up by a later step."""
        wanted = {config.name: config for config in configs}
        changed_models = set()
        for name in [name for name in self._updates if name not in wanted]:
            await self._cancel_update(name)
        for name, model in list(self.repository.models.items()):
            if name not in wanted:
                self._retries.pop(name, None)
                for entry in model.versions.values():
                    if entry.state == VersionState.AVAILABLE:
                        _retire(entry)
                        changed_models.add(name)
        if wait and self._updates:
            await asyncio.wait(list(self._updates.values()))
            for name, task in list(self._updates.items()):
                self._settle(name, task)
        started = {}
        now = time.monotonic()
        for config in configs:
            if config.name in self._updates:
                continue  # still updating since an earlier step
            model = self.repository.models.get(config.name)
            if model is None or model.config != config or config.name in force:
                started[config.name] = asyncio.create_task(self._replace_model(config, model))
            elif self._retries.get(config.name, (0, now))[1] <= now:
                started[config.name] = asyncio.create_task(self._load_model(model))
        if started:
            await asyncio.wait(started.values(), timeout=None if wait else self.poll_s)
        for name, task in started.items():
            self._updates[name] = task
            if task.done():
                self._settle(name, task)
            else:
                log.debug("model %s: still updating; the next steps leave it out until it ends", name)
                task.add_done_callback(lambda done, name=name: self._settle(name, done))
        changed_models |= self._late
        self._late = set()
        changed_libraries = self._load_libraries(libraries)
        changed = self._reload_pipelines(pipelines, changed_models, changed_libraries, force)
        changed = bool(changed_models or changed_libraries) or changed
        return await self._reload_graphs(graphs, force) or changed

    def _settle(self, name: str, task: asyncio.Task[bool]) -> None:
        """Take a finished update's outcome (once): its model goes to the next step's changes when it changed."""
        if self._updates.get(name) is not task:
            return
        del self._updates[name]
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("model %s: update failed", name, exc_info=task.exception())
        elif task.result():
            self._late.add(name)

    async def _cancel_update(self, name: str) -> None:
        """Stop a model's update still running (the model was removed): the versions it was loading end."""
        task = self._updates.pop(name, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _replace_model(self, config: ModelConfig, old: Model | None) -> bool:
        """Load a new or changed model beside the old one, then switch and retire the old versions."""
        fresh = Model(config.name, config)
        await self._load_model(fresh)
        if old is not None:
            for entry in old.versions.values():
                if entry.state == VersionState.AVAILABLE:
                    _retire(entry)
            # Versions the new configuration did not load stay visible as retired, as OVMS keeps them.
            for version, entry in old.versions.items():
                fresh.versions.setdefault(version, entry)
        self.repository.models[config.name] = fresh
        return True

    def _reload_pipelines(
        self,
        configs: Sequence[PipelineConfig],
        changed_models: set[str],
        changed_libraries: set[str],
        force: Collection[str] = (),
    ) -> bool:
        """After a change of models, libraries or pipeline definitions: rebuild the pipelines that are new, changed,
        not available, or run a model or library that changed, and retire the ones no longer configured. The others
        keep serving untouched (their custom nodes are not initialized again). A rebuilt pipeline replaces the old
        one at once; the old one finishes the requests running on it, then deinitializes its custom nodes. True when
        a pipeline changed."""
        forced = {config.name for config in configs} & set(force)
        if not changed_models and not changed_libraries and not forced and list(configs) == self._pipeline_configs:
            return False
        self._pipeline_configs = list(configs)
        wanted = {config.name: config for config in configs}
        previous = {name: model.versions[1] for name, model in self.repository.pipelines.items()}
        changed = False
        for name, entry in previous.items():
            if name not in wanted and entry.state != VersionState.END:
                _close_pipeline(entry)
                _retire(entry)
                changed = True
        models = self.repository.pipelines  # the previous ones
        self.repository.pipelines = {n: m for n, m in models.items() if n not in wanted}
        for config in configs:
            if config.name in self.repository.pipelines:  # defined twice: the first definition is served
                self._load_pipeline(config)
                continue
            entry = previous.get(config.name)
            pipeline = entry.servable if entry is not None else None
            unaffected = (
                isinstance(pipeline, Pipeline)
                and pipeline.config == config
                and not pipeline.models & changed_models
                and not pipeline.libraries & changed_libraries
                and config.name not in forced
            )
            if entry is not None and entry.state == VersionState.AVAILABLE and unaffected:
                self.repository.pipelines[config.name] = models[config.name]
                continue
            self._load_pipeline(config)
            if entry is not None:
                _close_pipeline(entry)
            rebuilt = self.repository.pipelines.get(config.name)
            state = rebuilt.versions[1].state if rebuilt is not None else None
            changed = changed or entry is None or entry.state != state or entry.state == VersionState.AVAILABLE
        return changed

    def _remote_directory(self, base_path: str) -> RemoteModelDirectory | None:
        """The object storage directory of a `base_path` URL (one client and cache per URL); None for a local path."""
        if not is_remote(base_path):
            return None
        remote = self._remote.get(base_path)
        if remote is None:
            remote = self._remote[base_path] = RemoteModelDirectory(base_path, self.storage_timeout_s)
        return remote

    async def _list_remote(self, model: Model, remote: RemoteModelDirectory) -> dict[int, Listing]:
        """The model's version directories in object storage. An error is logged when it first appears, and the
        model is tried again after a delay that doubles with each failure in a row."""
        try:
            listing = await remote.list_versions()
        except ServingError as exc:
            failures = self._retries.get(model.name, (0, 0.0))[0] + 1
            delay = min(self.poll_s * 2 ** (failures - 1), max(RETRY_MAX_S, self.poll_s))
            self._retries[model.name] = (failures, time.monotonic() + delay)
            if self._remote_errors.get(model.name) != exc.message:
                self._remote_errors[model.name] = exc.message
                log.error("model %s: cannot list %s: %s", model.name, remote.url, exc.message)
            log.debug("model %s: failure %d in a row to list %s; next attempt in %g s", model.name, failures,
                      remote.url, delay)  # fmt: skip
            raise
        self._retries.pop(model.name, None)
        if self._remote_errors.pop(model.name, None) is not None:
            log.info("model %s: %s can be listed again", model.name, remote.url)
        return listing

    async def _load_version(
        self, model: Model, version: int, base_path: Path, remote: RemoteModelDirectory | None = None
    ) -> bool:
        entry = model.versions[version]
        entry.set_state(VersionState.LOADING)
        assert model.config is not None
        try:
            if remote is not None:
                assert entry.source is not None
                path = await remote.download(version, entry.source)
            else:
                path = base_path if base_path.is_file() else base_path / str(version)
            pool_settings = self.repository.pool_settings
            servable = await asyncio.to_thread(
                OpenVinoModel.load, self.core, model.config, version, path, pool_settings, self.cache_dir
            )
        except asyncio.CancelledError:  # the model was removed, or the server stops
            entry.set_state(VersionState.END)
            raise
        except Exception as exc:
            entry.failure = redact_paths(str(exc), [base_path.parent])
            entry.set_state(VersionState.LOADING, "UNKNOWN")
            log.error("Error occurred while loading model: %s; version: %d; error: %s", model.name, version, exc)
            return False
        entry.servable = servable
        entry.set_state(VersionState.AVAILABLE)
        cached = "; loaded from the model cache" if servable.loaded_from_cache else ""
        log.info("Loaded model %s; version: %d; nireq: %d%s", model.name, version, servable.nireq, cached)
        log.debug(
            "model %s version %d: OpenVINO streams %d, threads %d",
            model.name,
            version,
            servable.streams,
            servable.threads,
        )
        return True

    def unload(self) -> list[OpenVinoModel]:
        """Retire every version (UNLOADING -> END) and release the compiled models and graphs; the model versions
        retired (whose inferences still running the caller may wait for before the process exits). Updates still
        running are cancelled."""
        for task in self._updates.values():
            task.cancel()
        for model in list(self.repository.graphs.values()):
            if model.versions[1].state == VersionState.AVAILABLE:
                self._retire_graph(model)
        retired = []
        for model in self.repository.servables():
            for entry in model.versions.values():
                if entry.state == VersionState.AVAILABLE:
                    if isinstance(entry.servable, OpenVinoModel):
                        retired.append(entry.servable)
                    _close_pipeline(entry)
                    _retire(entry)
        return retired


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _unchanged(library: Library, config: LibraryConfig) -> bool:
    """Whether a loaded library is still what `config` names: the same path, and the same file behind it."""
    if library.base_path != config.base_path:
        return False
    return library.signature is None or library.signature == file_signature(config.base_path)


def _close_pipeline(entry: ModelVersion) -> None:
    """Retire a pipeline's custom nodes (after the requests running on it), if it is a pipeline that was built."""
    if isinstance(entry.servable, Pipeline):
        entry.servable.close()


def _retire(entry: ModelVersion) -> None:
    """UNLOADING -> END. Requests already running on it hold the servable and finish; new ones are refused."""
    entry.set_state(VersionState.UNLOADING)
    entry.servable = None
    entry.set_state(VersionState.END)
