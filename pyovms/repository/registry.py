"""The model repository: what is served now. Models, pipelines and graphs by name, their versions, version states
and default versions, and the lookups every request makes. `pyovms/control/model_manager.py` fills it.

Each version moves through OVMS's states START -> LOADING -> AVAILABLE -> UNLOADING -> END; a version that
failed to load stays LOADING with error code UNKNOWN. Only AVAILABLE versions serve; the default version
is the highest AVAILABLE one.

Pipelines are looked up after models (spec §2.2) and have one version, 1, whatever version a request names (it
must still parse); one whose definition is invalid stays LOADING with error code FAILED_PRECONDITION. Graphs
(graph.pbtxt) come last, with the same single version and the same treatment of a definition that fails to load.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from dataclasses import dataclass, field

from ..custom_nodes.interface import Library
from ..errors import ServingError, Status
from ..scheduling.infer_requests import DEFAULT_POOL_SETTINGS, PoolSettings
from .config import ModelConfig
from .servable import Servable

log = logging.getLogger("pyovms.repository")

LOAD_WAIT_S = 10.0
LOAD_POLL_S = 0.1
_VERSION_RE = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64_MAX = (1 << 63) - 1


class VersionState(enum.IntEnum):
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(slots=True)
class ModelVersion:
    """One version of a model and its state."""

    model_name: str
    version: int
    state: VersionState = VersionState.START
    error_code: str = "OK"
    """OK, UNKNOWN (load failed) or FAILED_PRECONDITION, as OVMS reports them."""
    failure: str = ""
    servable: Servable | None = None
    kind: str = "model"
    """"model", "pipeline" or "graph": which OVMS messages its lookups answer with."""
    source: dict[str, tuple[int, str]] | None = None
    """The objects a version in object storage was loaded from (a failed one is tried again when they change)."""

    def set_state(self, state: VersionState, error_code: str = "OK") -> None:
        self.state, self.error_code = state, error_code
        log.info(
            'STATUS CHANGE: Version %d of model %s status change. New status: ( "state": "%s", "error_code": "%s" )',
            self.version,
            self.model_name,
            state.name,
            error_code,
        )

    @property
    def load_failed(self) -> bool:
        return self.state == VersionState.LOADING and self.error_code != "OK"


@dataclass(slots=True)
class Model:
    """A named model with its versions."""

    name: str
    config: ModelConfig | None
    """None for a pipeline or a graph."""
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    kind: str = "model"
    failure: str = ""
    """Why a model has no version at all (its directory or storage could not be listed), else empty."""

    def default_version(self) -> ModelVersion | None:
        """The highest AVAILABLE version."""
        best = None
        for entry in self.versions.values():  # on every inference that names no version: no list, no lambda
            if entry.state == VersionState.AVAILABLE and (best is None or entry.version > best.version):
                best = entry
        return best

    def available_versions(self) -> list[int]:
        return sorted(v.version for v in self.versions.values() if v.state == VersionState.AVAILABLE)


def parse_version(text: str) -> int:
    """A request's version string as an int (empty = 0); INVALID_ARGUMENT unless `-?[0-9]+` without leading zero."""
    if text == "":
        return 0
    if not _VERSION_RE.fullmatch(text) or text == "-0" or not -_INT64_MAX - 1 <= int(text) <= _INT64_MAX:
        raise ServingError(Status.MODEL_VERSION_INVALID_FORMAT, f"version: {text}")
    return int(text)


class Repository:
    """Every model, pipeline and graph the server has, with the custom node libraries pipelines run."""

    def __init__(self, pool_settings: PoolSettings = DEFAULT_POOL_SETTINGS) -> None:
        self.pool_settings = pool_settings
        """How each model version's infer-request pool runs (inline threshold, queue bound)."""
        self.models: dict[str, Model] = {}
        self.pipelines: dict[str, Model] = {}
        self.graphs: dict[str, Model] = {}
        self.libraries: dict[str, Library] = {}
        """Custom node libraries that loaded; pipelines naming another one are invalid."""
        self.library_failures: dict[str, ServingError] = {}
        """Why each configured library that is not loaded failed (what its pipelines report)."""

    def lookup(self, name: str) -> Model | None:
        """The model, pipeline or graph of that name (looked up in that order, as OVMS does)."""
        return self.models.get(name) or self.pipelines.get(name) or self.graphs.get(name)

    def servables(self) -> list[Model]:
        """Every model, pipeline and graph, sorted by name."""
        return sorted([*self.models.values(), *self.pipelines.values(), *self.graphs.values()], key=lambda m: m.name)

    def get_model(self, name: str) -> Model:
        """The model, else the pipeline, else the graph of that name."""
        model = self.lookup(name)
        if model is None:
            raise ServingError(Status.MODEL_NAME_MISSING, f"name: {name}")
        return model

    def find_version(self, name: str, version_text: str, *, zero_is_default: bool) -> ModelVersion:
        """The version a request names: explicit, or the default one for an empty (or, for infer, `0`) version."""
        version = parse_version(version_text)
        model = self.get_model(name)
        if model.kind != "model":  # pipelines and graphs are unversioned: the version only has to parse
            return model.versions[1]
        if version == 0 and (zero_is_default or version_text == ""):
            entry = model.default_version()
            if entry is None:
                raise ServingError(Status.MODEL_VERSION_MISSING, f"name: {name}; no version is available")
            return entry
        entry = model.versions.get(version)
        if entry is None:
            raise ServingError(Status.MODEL_VERSION_MISSING, f"name: {name}; version: {version}")
        return entry

    async def serving_version(self, name: str, version_text: str) -> ModelVersion:
        """The AVAILABLE version an inference runs on, waiting up to 10 s for one still loading."""
        entry = self.find_version(name, version_text, zero_is_default=True)
        waited = 0.0
        while entry.state < VersionState.AVAILABLE and not entry.load_failed and waited < LOAD_WAIT_S:
            await asyncio.sleep(LOAD_POLL_S)
            waited += LOAD_POLL_S
        check_available(entry)
        return entry


_DEFINITION_STATUSES = {
    "pipeline": (Status.PIPELINE_DEFINITION_NOT_LOADED_ANYMORE, Status.PIPELINE_DEFINITION_NOT_LOADED_YET),
    "graph": (Status.MEDIAPIPE_DEFINITION_NOT_LOADED_ANYMORE, Status.MEDIAPIPE_DEFINITION_NOT_LOADED_YET),
}
"""(retired, not loaded yet) statuses of the unversioned servables."""


def check_available(entry: ModelVersion) -> None:
    """Raise the OVMS error for a version (or pipeline, or graph) that is not AVAILABLE."""
    if entry.kind in _DEFINITION_STATUSES:
        retired, not_yet = _DEFINITION_STATUSES[entry.kind]
        if entry.state > VersionState.AVAILABLE:
            raise ServingError(retired, f"name: {entry.model_name}")
        if entry.state < VersionState.AVAILABLE:
            raise ServingError(not_yet, f"name: {entry.model_name}; {entry.failure}")
        return
    where = f"name: {entry.model_name}; version: {entry.version}"
    if entry.state > VersionState.AVAILABLE:
        raise ServingError(Status.MODEL_VERSION_NOT_LOADED_ANYMORE, where)
    if entry.state < VersionState.AVAILABLE:
        details = f"{where}; loading failed: {entry.failure}" if entry.load_failed else where
        raise ServingError(Status.MODEL_VERSION_NOT_LOADED_YET, details)
