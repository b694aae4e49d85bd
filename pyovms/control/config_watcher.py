"""Live reload (spec §4.4): every `--file_system_poll_wait_seconds` the configuration is read again and applied.

config.json is re-read when its content changed; every model's version directories are rescanned on every tick.
A file that does not parse or breaks the schema changes nothing (the last good configuration keeps serving and
its version directories are still rescanned). `POST /v1/config/reload` runs the same step at once. One step runs
at a time.

Explicit loads and unloads (the repository extension, `repository_extension.py`) are pins laid over config.json's
sections: an unloaded name is left out, a loaded one is kept (with its override, or from the repository root when
config.json does not name it). Pins hold until config.json's content changes; then config.json alone applies.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..custom_nodes.interface import LibraryConfig
from ..errors import ServingError, Status, redact_paths
from ..repository.config import GraphEntry, ModelConfig, ServingConfig, load_config, load_subconfig
from ..servables.pipelines.config import PipelineConfig
from .model_manager import ModelManager

log = logging.getLogger("pyovms.config_watcher")

Configs = tuple[list[ModelConfig], list[PipelineConfig], list[LibraryConfig], list[GraphEntry]]


def parse_sections(config_path: str) -> Configs:
    """Models, pipelines, custom node libraries and graphs of a config.json (raise ServingError when it is
    invalid)."""
    return sections_of(load_config(config_path), config_path)


def sections_of(config: ServingConfig, config_path: str) -> Configs:
    """The served sections of a loaded config.json (library paths are relative to its directory)."""
    pipelines = [PipelineConfig.from_json(entry) for entry in config.extra.get("pipeline_config_list", [])]
    config_dir = Path(config_path).resolve().parent
    libraries = [
        LibraryConfig.from_json(entry, config_dir) for entry in config.extra.get("custom_node_library_config_list", [])
    ]
    return with_subconfig_models(config.models, config.graphs), pipelines, libraries, config.graphs


def with_subconfig_models(models: list[ModelConfig], graphs: list[GraphEntry]) -> list[ModelConfig]:
    """`models` plus those of the graphs' subconfig.json files (a name config.json already has keeps its entry);
    a subconfig that cannot be read is logged and left out."""
    result = list(models)
    names = {model.name for model in models}
    for graph in graphs:
        try:
            extra = load_subconfig(graph)
        except ServingError as exc:
            log.error("Graph %s: subconfig not loaded: %s", graph.name, exc.message)
            continue
        for model in extra:
            if model.name not in names:
                names.add(model.name)
                result.append(model)
    return result


@dataclass(frozen=True, slots=True)
class Pin:
    """An explicit load or unload of one name, in force until config.json changes."""

    loaded: bool
    model: ModelConfig | None = None
    """The model served under the name (a `config` override, or a directory of the repository root)."""
    graph: GraphEntry | None = None
    """The graph served under the name (a directory of the repository root holding a graph.pbtxt)."""


class ConfigWatcher:
    """Applies the configuration (config.json's sections and the pins over them) again, on a timer and on
    request."""

    def __init__(self, manager: ModelManager, configs: Configs, config_path: str | None) -> None:
        self.manager = manager
        self.configs = configs
        """The last configuration that parsed."""
        self.config_path = config_path
        self._digest = self._read_digest()
        self._lock = asyncio.Lock()
        self.pins: dict[str, Pin] = {}
        """Explicit loads and unloads by name."""

    def _read_digest(self) -> str | None:
        if self.config_path is None:
            return None
        try:
            return hashlib.md5(Path(self.config_path).read_bytes()).hexdigest()
        except OSError:
            return None

    async def reload(self, strict: bool = False) -> bool:
        """Re-read config.json if it changed, apply it and rescan versions; True when anything changed.

        `strict` (the REST reload) raises when config.json cannot be read or is invalid, and waits for every model's
        update; the timer only logs it, and leaves updates slower than one poll period running in the background.
        """
        async with self._lock:
            digest = self._read_digest()
            if self.config_path is not None and (digest != self._digest or strict):
                try:
                    self.configs = parse_sections(self.config_path)
                except ServingError as exc:
                    log.error("Reloading config file failed: %s", exc.message)
                    if strict:  # a client asked: the reason without the server's paths
                        reason = redact_paths(exc.message, [Path(self.config_path).parent])
                        raise ServingError(Status.CONFIG_RELOAD_FAILED, reason) from exc
                else:
                    if digest != self._digest:
                        log.info("Configuration file %s changed: applying it", self.config_path)
                        if self.pins:
                            log.info("Explicit loads and unloads of %s no longer apply", ", ".join(sorted(self.pins)))
                            self.pins.clear()
                self._digest = digest
            return await self._apply(wait=strict)

    async def pin(self, pins: Mapping[str, Pin]) -> bool:
        """Lay explicit loads and unloads over the configuration and apply it (a loaded name is loaded again even when
        nothing changed); True when anything changed."""
        async with self._lock:
            self.pins.update(pins)
            return await self._apply(force={name for name, pin in pins.items() if pin.loaded})

    async def _apply(self, force: set[str] | frozenset[str] = frozenset(), wait: bool = True) -> bool:
        changed = await self.manager.reload(*self.effective(), force=force, wait=wait)
        if changed:
            log.info("Configuration applied: model versions or pipelines changed")
        return changed

    def effective(self) -> Configs:
        """config.json's sections with the pins laid over them."""
        models, pipelines, libraries, graphs = self.configs
        if not self.pins:
            return self.configs
        replaced = {name for name, pin in self.pins.items() if not pin.loaded or pin.model or pin.graph}
        extra_graphs = [pin.graph for pin in self.pins.values() if pin.loaded and pin.graph is not None]
        models = [model for model in models if model.name not in replaced]
        models += [pin.model for pin in self.pins.values() if pin.loaded and pin.model is not None]
        return (
            with_subconfig_models(models, extra_graphs),
            [pipeline for pipeline in pipelines if pipeline.name not in replaced],
            libraries,
            [graph for graph in graphs if graph.name not in replaced] + extra_graphs,
        )

    def configured_kind(self, name: str) -> str | None:
        """ "model", "pipeline" or "graph" when config.json or a pin names `name` (unloaded or not), else None."""
        pin = self.pins.get(name)
        if pin is not None and pin.model is not None:
            return "model"
        if pin is not None and pin.graph is not None:
            return "graph"
        models, pipelines, _, graphs = self.configs
        for kind, entries in (("model", models), ("pipeline", pipelines), ("graph", graphs)):
            if any(entry.name == name for entry in entries):
                return kind
        return None

    async def watch(self, period_s: float, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Reload every `period_s` seconds until cancelled; a failing step is logged and the next one runs."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never stop watching
                log.exception("configuration reload failed")
                if on_error is not None:
                    on_error(exc)
