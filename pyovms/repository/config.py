"""config.json: its JSON schema, loading, and the per-model settings it yields.

The schema mirrors OVMS's (`additionalProperties: false` everywhere). Sections served by later features
(pipelines, graphs, custom nodes, monitoring) are accepted by the schema and kept in `ServingConfig.extra`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ServingError, Status

log = logging.getLogger("pyovms.config")

_DIMS = {"type": "string"}
_PER_TENSOR = {"type": "object", "additionalProperties": {"type": "string"}}
_NO_EXTRA = {"additionalProperties": False}

_VERSION_POLICY = {
    "type": "object",
    "oneOf": [
        {"required": ["all"], "properties": {"all": {"type": "object", **_NO_EXTRA}}, **_NO_EXTRA},
        {
            "required": ["latest"],
            "properties": {
                "latest": {
                    "type": "object",
                    "properties": {"num_versions": {"type": "integer", "minimum": 1}},
                    **_NO_EXTRA,
                }
            },
            **_NO_EXTRA,
        },
        {
            "required": ["specific"],
            "properties": {
                "specific": {
                    "type": "object",
                    "required": ["versions"],
                    "properties": {"versions": {"type": "array", "items": {"type": "integer", "minimum": 1}}},
                    **_NO_EXTRA,
                }
            },
            **_NO_EXTRA,
        },
    ],
}

_MODEL_CONFIG = {
    "type": "object",
    "required": ["config"],
    "properties": {
        "config": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "base_path": {"type": "string"},
                "batch_size": {"type": ["integer", "string"], "minimum": 0},
                "shape": {"oneOf": [_DIMS, _PER_TENSOR]},
                "layout": {"oneOf": [_DIMS, _PER_TENSOR]},
                "model_version_policy": _VERSION_POLICY,
                "nireq": {"type": "integer", "minimum": 0, "maximum": 100000},
                "target_device": {"type": "string"},
                "plugin_config": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
                "allow_cache": {"type": "boolean"},
                "custom_loader_options": {
                    "type": "object",
                    "required": ["loader_name"],
                    "properties": {"loader_name": {"type": "string"}},
                },
                "graph_path": {"type": "string"},
                "subconfig": {"type": "string"},
            },
            **_NO_EXTRA,
        }
    },
    **_NO_EXTRA,
}

_SOURCE = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "required": ["node_name", "data_item"],
        "properties": {"node_name": {"type": "string"}, "data_item": {"type": "string"}},
        **_NO_EXTRA,
    },
}

_NODE = {
    "type": "object",
    "required": ["name", "type", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "type": {"enum": ["DL model", "custom"]},
        "model_name": {"type": "string"},
        "library_name": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "inputs": {"type": "array", "items": _SOURCE},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["data_item", "alias"],
                "properties": {"data_item": {"type": "string"}, "alias": {"type": "string"}},
                **_NO_EXTRA,
            },
        },
        "params": {"type": "object", "additionalProperties": {"type": "string"}},
        "demultiply_count": {"type": "integer", "minimum": -1, "maximum": 10000},
        "gather_from_node": {"type": "string"},
    },
    **_NO_EXTRA,
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model_config_list"],
    "properties": {
        "model_config_list": {"type": "array", "items": _MODEL_CONFIG},
        "pipeline_config_list": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "nodes", "inputs", "outputs"],
                "properties": {
                    "name": {"type": "string"},
                    "nodes": {"type": "array", "items": _NODE},
                    "inputs": {"type": "array", "items": {"type": "string"}},
                    "outputs": {"type": "array", "items": _SOURCE},
                    "demultiply_count": {"type": "integer", "minimum": -1, "maximum": 10000},
                },
                **_NO_EXTRA,
            },
        },
        "mediapipe_config_list": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "base_path": {"type": "string"},
                    "graph_path": {"type": "string"},
                    "subconfig": {"type": "string"},
                },
                **_NO_EXTRA,
            },
        },
        "custom_node_library_config_list": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "base_path"],
                "properties": {"name": {"type": "string"}, "base_path": {"type": "string"}},
                **_NO_EXTRA,
            },
        },
        "custom_loader_config_list": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["config"],
                "properties": {
                    "config": {
                        "type": "object",
                        "required": ["loader_name", "library_path"],
                        "properties": {
                            "loader_name": {"type": "string"},
                            "library_path": {"type": "string"},
                            "loader_config_file": {"type": "string"},
                        },
                        **_NO_EXTRA,
                    }
                },
                **_NO_EXTRA,
            },
        },
        "monitoring": {
            "type": "object",
            "required": ["metrics"],
            "properties": {
                "metrics": {
                    "type": "object",
                    "required": ["enable"],
                    "properties": {
                        "enable": {"type": "boolean"},
                        "metrics_list": {"type": "array", "items": {"type": "string"}},
                    },
                    **_NO_EXTRA,
                }
            },
            **_NO_EXTRA,
        },
    },
    **_NO_EXTRA,
}

_VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


@dataclass(slots=True)
class ModelConfig:
    """Settings of one model, from a `model_config_list` entry or from the single-model CLI flags."""

    name: str
    base_path: str = ""
    """Model directory (version subdirectories) or a single model file, absolute once loaded."""
    batch_size: str | None = None
    """Number, `-1`, range `a:b` or `auto`; ignored when `shape` is set."""
    shape: str | dict[str, str] | None = None
    """`(1,3,224,224)` for a single-input model, or per input name; dims may be `-1` or `a:b`."""
    layout: str | dict[str, str] | None = None
    """`NHWC:NCHW` (target:source, adds a transpose) or `NHWC` (annotation only), or per tensor name."""
    model_version_policy: dict[str, Any] | None = None
    nireq: int = 0
    """Infer requests in the pool; 0 means OpenVINO's optimal number."""
    target_device: str = "CPU"
    plugin_config: dict[str, Any] = field(default_factory=dict)
    allow_cache: bool = False

    @classmethod
    def from_json(cls, entry: dict[str, Any], config_dir: Path) -> ModelConfig:
        """Build from a schema-valid `config` object; relative base paths are resolved against config_dir."""
        base_path = entry.get("base_path", "")
        if base_path and "://" not in base_path:
            base_path = str((config_dir / os.path.expanduser(base_path)).resolve())
        batch_size = entry.get("batch_size")
        return cls(
            name=entry["name"],
            base_path=base_path,
            batch_size=None if batch_size is None else str(batch_size),
            shape=entry.get("shape"),
            layout=entry.get("layout"),
            model_version_policy=entry.get("model_version_policy"),
            nireq=entry.get("nireq", 0),
            target_device=entry.get("target_device", "CPU"),
            plugin_config=dict(entry.get("plugin_config", {})),
            allow_cache=entry.get("allow_cache", False),
        )


GRAPH_FILE = "graph.pbtxt"
SUBCONFIG_FILE = "subconfig.json"


@dataclass(frozen=True, slots=True)
class GraphEntry:
    """A graph servable (spec §6.1): its `graph.pbtxt` and the optional `subconfig.json` of the models it uses."""

    name: str
    base_path: str
    graph_path: str
    subconfig: str | None = None
    """An existing subconfig.json, or None."""

    @classmethod
    def from_json(cls, entry: dict[str, Any], config_dir: Path) -> GraphEntry:
        """From a `mediapipe_config_list` item, or a `model_config_list` config that names or holds a graph."""
        base = _resolve(entry.get("base_path") or entry["name"], config_dir)
        graph = _resolve(entry.get("graph_path") or GRAPH_FILE, base)
        subconfig = _resolve(entry.get("subconfig") or SUBCONFIG_FILE, base)
        return cls(entry["name"], str(base), str(graph), str(subconfig) if subconfig.is_file() else None)

    @staticmethod
    def is_graph(entry: dict[str, Any], config_dir: Path) -> bool:
        """Whether a `model_config_list` config is a graph: it sets `graph_path` or its directory holds one."""
        if entry.get("graph_path") or entry.get("subconfig"):
            return True
        base_path = entry.get("base_path", "")
        return bool(base_path) and "://" not in base_path and (_resolve(base_path, config_dir) / GRAPH_FILE).is_file()


def _resolve(path: str, directory: Path) -> Path:
    return (directory / os.path.expanduser(path)).resolve()


def load_subconfig(graph: GraphEntry) -> list[ModelConfig]:
    """The models of a graph's subconfig.json (paths relative to the graph's directory); none when absent."""
    if graph.subconfig is None:
        return []
    path = Path(graph.subconfig)
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ServingError(Status.FILE_INVALID, f"{path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ServingError(Status.JSON_INVALID, f"{path}: {exc}") from exc
    if not isinstance(document, dict) or set(document) != {"model_config_list"}:
        raise ServingError(Status.JSON_INVALID, f"{path}: a subconfig holds model_config_list only")
    validate_document(document)
    return [ModelConfig.from_json(item["config"], Path(graph.base_path)) for item in document["model_config_list"]]


@dataclass(slots=True)
class ServingConfig:
    """The parsed content of config.json."""

    models: list[ModelConfig]
    extra: dict[str, Any] = field(default_factory=dict)
    """Top-level sections other than model_config_list, for the features that serve them."""
    graphs: list[GraphEntry] = field(default_factory=list)
    """Graphs from `mediapipe_config_list` and from `model_config_list` entries that are graphs."""


def load_config(path: str | os.PathLike[str]) -> ServingConfig:
    """Read, parse and schema-check config.json; raise ServingError (FILE_INVALID / JSON_INVALID) on failure."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ServingError(Status.FILE_INVALID, f"{path}: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServingError(Status.JSON_INVALID, f"{path}: {exc}") from exc
    validate_document(document)
    config_dir = path.resolve().parent
    entries = [item["config"] for item in document["model_config_list"]]
    models = [ModelConfig.from_json(e, config_dir) for e in entries if not GraphEntry.is_graph(e, config_dir)]
    graphs = [GraphEntry.from_json(e, config_dir) for e in entries if GraphEntry.is_graph(e, config_dir)]
    graphs += [GraphEntry.from_json(e, config_dir) for e in document.get("mediapipe_config_list", [])]
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ServingError(Status.JSON_INVALID, f"duplicate model names: {', '.join(duplicates)}")
    extra = {k: v for k, v in document.items() if k not in ("model_config_list", "mediapipe_config_list")}
    return ServingConfig(models, extra, graphs)


def validate_document(document: Any) -> None:
    """Check a parsed config document against the schema; the error names the JSON pointer and keyword."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(document))
    if error is None:
        return
    schema_ptr = "/".join(str(p) for p in error.schema_path)
    key = "/".join(str(p) for p in error.absolute_path)
    detail = f"JSON schema parse error:#/{schema_ptr}. Keyword:{error.validator} Key: #/{key} ({error.message})"
    raise ServingError(Status.JSON_INVALID, detail)
