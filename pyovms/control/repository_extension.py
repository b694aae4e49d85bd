"""The model repository extension (Triton's, as tritonclient speaks it): the index of what the server has, and
explicit loads and unloads of one model, pipeline or graph.

- **Index**: one entry per version of every model, pipeline and graph the server knows (config.json, explicit
  loads), with Triton's states (READY, LOADING, UNLOADING, UNAVAILABLE and the reason), then the directories of the
  repository root that nothing serves (name only, as Triton lists models never loaded).
- **Load**: a configured name is loaded again (a reload of its files, its old versions serving until the new ones
  are ready); the `config` parameter (OVMS's model `config` object, as JSON) replaces a model's configuration; a
  name that nothing configures is loaded from the repository root's directory of that name (`--model_repository_path`,
  else config.json's directory), as a graph when it holds a graph.pbtxt. The call answers once the load has
  finished, with an error when nothing of it is available.
- **Unload**: the name is retired (new requests are refused) and the call answers once the requests already running
  on it have finished. `unload_dependents` also unloads the pipelines that run the model.

An explicit load or unload pins the name in that state until config.json changes (`config_watcher.py`): polling of
version directories goes on for a loaded name, but a polled config.json that did not change never undoes it.

A client's load is confined: a `config` override's base_path must resolve (symlinks followed) inside the repository
root or a directory config.json already serves a model from, and a URL must lie under a prefix config.json or
`--model_repository_path` already serves; nothing else is read. Failure reasons name no server path (the model
manager records them through `pyovms.errors.redact_paths`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ServingError, Status
from ..repository.config import GRAPH_FILE, GraphEntry, ModelConfig, validate_document
from ..repository.registry import Model, Repository, VersionState
from ..servables.pipelines.pipeline import Pipeline
from ..tensors.messages import RepositoryEntry
from .config_watcher import ConfigWatcher, Pin

log = logging.getLogger("pyovms.repository_control")

UNLOAD_WAIT_S = 60.0
"""How long an unload waits for the requests running on what it retires before it answers anyway."""
UNLOAD_POLL_S = 0.005
LOAD_PARAMETERS = frozenset({"config"})
UNLOAD_PARAMETERS = frozenset({"unload_dependents"})

_STATES = {
    VersionState.START: "LOADING",
    VersionState.LOADING: "LOADING",
    VersionState.AVAILABLE: "READY",
    VersionState.UNLOADING: "UNLOADING",
    VersionState.END: "UNAVAILABLE",
}


@dataclass
class RepositoryControl:
    """Index, load and unload over the repository, through the configuration watcher (which holds the pins)."""

    repository: Repository
    watcher: ConfigWatcher
    root: Path | None
    """Where a name that nothing configures is looked for; None: nowhere."""
    remote_root: str | None = None
    """`--model_repository_path` when it is a URL: loads from under it are served."""

    def index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every version the server knows, then the repository root's other directories; only READY versions when
        `ready_only`. Sorted by name and version."""
        entries = [entry for model in self.repository.servables() for entry in _entries(model)]
        known = {entry.name for entry in entries}
        if self.root is not None and self.root.is_dir():
            entries += [
                RepositoryEntry(path.name) for path in sorted(self.root.iterdir()) if _servable_directory(path, known)
            ]
        if ready_only:
            entries = [entry for entry in entries if entry.state == "READY"]
        return sorted(entries, key=lambda e: (e.name, _version_key(e.version)))

    async def load(self, name: str, parameters: Mapping[str, Any], confined: bool = True) -> None:
        """Load (or reload) `name`; ServingError when it is unknown, the parameters are wrong, or it did not load.
        A `confined` load (a client's) reads nothing outside the repository (see the module's docstring)."""
        _check_parameters("load", parameters, LOAD_PARAMETERS)
        override = parameters.get("config")
        model_override = None
        if override is not None:
            model_override, given = _model_override(name, override, self.root or Path.cwd())
            if confined and not self._serves(model_override.base_path):
                log.warning("Explicit load of %s refused: base_path %s is outside the repository", name, given)
                raise ServingError(Status.LOAD_OUTSIDE_REPOSITORY, f"name: {name}; base_path: {given}")
        pin = self._pin_for_load(name, model_override)
        await self.watcher.pin({name: pin})
        log.info("Explicit load of %s finished", name)
        model = self.repository.lookup(name)
        if model is None or not any(v.state == VersionState.AVAILABLE for v in model.versions.values()):
            reason = _failure(model) if model is not None else "it is not configured"
            raise ServingError(Status.REPOSITORY_LOAD_FAILED, f"name: {name}; {reason}")

    def _roots(self) -> list[Path]:
        """The local directories a client's load may read: the repository root, then those of configured models."""
        models = self.watcher.configs[0]
        configured = [Path(m.base_path) for m in models if m.base_path and "://" not in m.base_path]
        return ([self.root] if self.root is not None else []) + configured

    def _serves(self, base_path: str) -> bool:
        """Whether `base_path` (resolved, or a URL) lies inside what the server already serves."""
        if "://" in base_path:
            return _url_under(base_path, self._remote_prefixes())
        resolved = Path(base_path).resolve()
        return any(resolved.is_relative_to(root.resolve()) for root in self._roots())

    def _remote_prefixes(self) -> list[str]:
        """URL prefixes a client's load may read: `--model_repository_path` and the parents of configured models."""
        urls = [m.base_path.rstrip("/") for m in self.watcher.configs[0] if "://" in m.base_path]
        prefixes = [url.rpartition("/")[0] + "/" for url in urls if "/" in url.partition("://")[2]]
        return prefixes + ([self.remote_root.rstrip("/") + "/"] if self.remote_root else [])

    def _pin_for_load(self, name: str, override: ModelConfig | None) -> Pin:
        configured = self.watcher.configured_kind(name)
        if override is not None:
            if configured not in (None, "model"):
                raise ServingError(
                    Status.REPOSITORY_REQUEST_INVALID, f"name: {name} is a {configured}; config overrides models only"
                )
            return Pin(loaded=True, model=override)
        if configured is not None:
            return Pin(loaded=True)
        directory = None if self.root is None else self.root / name
        if directory is None or name in ("", ".", "..") or "/" in name or not directory.is_dir():
            where = "; no such directory in the model repository" if directory is not None else ""
            raise ServingError(Status.MODEL_NAME_MISSING, f"name: {name}{where}")
        if not directory.resolve().is_relative_to(self.root.resolve()):  # type: ignore[union-attr]
            log.warning("Explicit load of %s refused: %s leads outside the repository", name, directory)
            raise ServingError(Status.LOAD_OUTSIDE_REPOSITORY, f"name: {name} is a link out of the model repository")
        if (directory / GRAPH_FILE).is_file():
            return Pin(loaded=True, graph=GraphEntry.from_json({"name": name}, self.root))  # type: ignore[arg-type]
        return Pin(loaded=True, model=ModelConfig(name=name, base_path=str(directory.resolve())))

    async def unload(self, name: str, parameters: Mapping[str, Any]) -> None:
        """Retire `name` (and, with `unload_dependents`, the pipelines running it); answers once the requests running
        on what was retired have finished (at most `UNLOAD_WAIT_S`)."""
        _check_parameters("unload", parameters, UNLOAD_PARAMETERS)
        dependents = parameters.get("unload_dependents", False)
        if not isinstance(dependents, bool):
            raise ServingError(Status.REPOSITORY_REQUEST_INVALID, "unload_dependents must be a bool")
        if self.repository.lookup(name) is None and self.watcher.configured_kind(name) is None:
            raise ServingError(Status.MODEL_NAME_MISSING, f"name: {name}")
        names = [name]
        if dependents:
            names += [
                pipeline.name
                for pipeline in self.repository.pipelines.values()
                if isinstance(pipeline.versions[1].servable, Pipeline) and name in pipeline.versions[1].servable.models
            ]
        running = [
            entry.servable
            for unloaded in names
            if (model := self.repository.lookup(unloaded)) is not None
            for entry in model.versions.values()
            if entry.state == VersionState.AVAILABLE and entry.servable is not None
        ]
        await self.watcher.pin({unloaded: Pin(loaded=False) for unloaded in names})
        in_flight = sum(servable.statistics.in_flight for servable in running)
        if in_flight:
            log.info("Unload of %s waits for %d request(s) in flight", name, in_flight)
        deadline = time.monotonic() + UNLOAD_WAIT_S
        while any(servable.statistics.in_flight for servable in running) and time.monotonic() < deadline:
            await asyncio.sleep(UNLOAD_POLL_S)
        log.info("Explicit unload of %s finished", ", ".join(names))


def _entries(model: Model) -> list[RepositoryEntry]:
    if not model.versions:
        return [RepositoryEntry(model.name, "", "UNAVAILABLE", model.failure or "no version is available")]
    entries = []
    for version, entry in sorted(model.versions.items()):
        state = _STATES[entry.state]
        reason = ""
        if entry.load_failed:
            state, reason = "UNAVAILABLE", entry.failure or entry.error_code
        elif entry.state == VersionState.END:
            reason = "unloaded"
        entries.append(RepositoryEntry(model.name, str(version), state, reason))
    return entries


def _failure(model: Model) -> str:
    """Why nothing of a model is available, for the load's error."""
    reasons = [entry.failure for entry in model.versions.values() if entry.failure]
    return "; ".join(reasons) or model.failure or "no version is available"


def _servable_directory(path: Path, known: set[str]) -> bool:
    """A directory of the repository root that nothing serves yet: numbered versions, or a graph."""
    if path.name in known or path.name.startswith(".") or not path.is_dir():
        return False
    return (path / GRAPH_FILE).is_file() or any(child.name.isdigit() for child in path.iterdir())


def _version_key(version: str) -> int:
    return int(version) if version.isdigit() else -1


def _check_parameters(call: str, parameters: Mapping[str, Any], accepted: frozenset[str]) -> None:
    unknown = sorted(set(parameters) - accepted)
    if unknown:
        served = ", ".join(sorted(accepted))
        raise ServingError(
            Status.REPOSITORY_REQUEST_INVALID,
            f"{call} parameters {', '.join(unknown)} are not served (served: {served}; model files cannot be sent)",
        )


def _url_under(url: str, prefixes: list[str]) -> bool:
    """Whether `url` is one of `prefixes` (each ending in `/`) or below one, with no `.` or `..` segment."""
    if any(part in (".", "..") for part in url.partition("://")[2].split("/")):
        return False
    return any(url.rstrip("/") + "/" == prefix or url.startswith(prefix) for prefix in prefixes)


def _model_override(name: str, text: Any, directory: Path) -> tuple[ModelConfig, str]:
    """The `config` parameter: OVMS's model `config` object as JSON (its name, when given, must be `name`; a relative
    base_path is read from `directory`, the repository root), and the base_path as the client gave it."""
    if not isinstance(text, str):
        raise ServingError(Status.REPOSITORY_REQUEST_INVALID, "config must be a JSON string")
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServingError(Status.REPOSITORY_REQUEST_INVALID, f"config is not JSON: {exc}") from exc
    if not isinstance(entry, dict):
        raise ServingError(Status.REPOSITORY_REQUEST_INVALID, "config must be a JSON object")
    if entry.setdefault("name", name) != name:
        raise ServingError(Status.REPOSITORY_REQUEST_INVALID, f"config names {entry['name']}, not {name}")
    if not entry.get("base_path"):
        raise ServingError(Status.REPOSITORY_REQUEST_INVALID, "config has no base_path")
    try:
        validate_document({"model_config_list": [{"config": entry}]})
    except ServingError as exc:
        raise ServingError(Status.REPOSITORY_REQUEST_INVALID, f"config: {exc.details}") from exc
    return ModelConfig.from_json(entry, directory), str(entry["base_path"])
