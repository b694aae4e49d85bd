"""Live reload (spec §4.4): every `--file_system_poll_wait_seconds` the configuration is read again and applied.

config.json is re-read when its content changed; every model's version directories are rescanned on every tick.
A file that does not parse or breaks the schema changes nothing (the last good configuration keeps serving and
its version directories are still rescanned). `POST /v1/config/reload` runs the same step at once. One step runs
at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from .config import GraphEntry, ModelConfig, ServingConfig, load_config, load_subconfig
from .custom_node import LibraryConfig
from .errors import ServingError, Status
from .model_manager import ModelManager
from .pipeline import PipelineConfig

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


class ConfigWatcher:
    """Applies the configuration again, on a timer and on request."""

    def __init__(self, manager: ModelManager, configs: Configs, config_path: str | None) -> None:
        self.manager = manager
        self.configs = configs
        """The last configuration that parsed."""
        self.config_path = config_path
        self._digest = self._read_digest()
        self._lock = asyncio.Lock()

    def _read_digest(self) -> str | None:
        if self.config_path is None:
            return None
        try:
            return hashlib.md5(Path(self.config_path).read_bytes()).hexdigest()
        except OSError:
            return None

    async def reload(self, strict: bool = False) -> bool:
        """Re-read config.json if it changed, apply it and rescan versions; True when anything changed.

        `strict` (the REST reload) raises when config.json cannot be read or is invalid; the timer only logs it.
        """
        async with self._lock:
            digest = self._read_digest()
            if self.config_path is not None and (digest != self._digest or strict):
                try:
                    self.configs = parse_sections(self.config_path)
                except ServingError as exc:
                    log.error("Reloading config file failed: %s", exc.message)
                    if strict:
                        raise ServingError(Status.CONFIG_RELOAD_FAILED, exc.message) from exc
                else:
                    if digest != self._digest:
                        log.info("Configuration file %s changed: applying it", self.config_path)
                self._digest = digest
            changed = await self.manager.reload(*self.configs)
            if changed:
                log.info("Configuration applied: model versions or pipelines changed")
            return changed

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
