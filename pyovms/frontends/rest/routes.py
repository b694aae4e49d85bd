"""The REST route table (OVMS's paths plus Triton's config, statistics, repository and shared memory routes) and how
a path finds its route.

Patterns are matched against the whole raw path (before percent-decoding, so an encoded `/` stays inside a model
name); captured names are percent-decoded afterwards. A path that matches a route with another method is 406
`Unsupported method`; a path that matches nothing is 400 `Invalid request URL`; a path with a `..` segment is
400 `The provided base path is invalid or doesn't exists`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ...errors import ServingError, Status
from ..access import Group

_MODEL = r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[0-9]+))?"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    """The handler's name in `pyovms.frontends.rest.server`."""
    method: str
    pattern: re.Pattern[str]
    group: Group | None
    """The API group a restriction names (`pyovms.frontends.access`); None: in no group."""
    probe: bool = False
    """A liveness or readiness probe: served without the API key."""


def _route(name: str, method: str, pattern: str, group: Group | None, probe: bool = False) -> Route:
    return Route(name, method, re.compile(pattern), group, probe)


_G = Group
ROUTES: tuple[Route, ...] = (
    _route("live", "GET", r"/v2/health/live", _G.HEALTH, probe=True),
    _route("ready", "GET", r"/v2/health/ready", _G.HEALTH, probe=True),
    _route("server_metadata", "GET", r"/v2", _G.METADATA),
    _route("all_statistics", "GET", r"/v2/models/stats", _G.STATISTICS),
    _route("model_ready", "GET", _MODEL + r"/ready", _G.HEALTH),
    _route("model_infer", "POST", _MODEL + r"/infer", _G.INFERENCE),
    _route("model_config", "GET", _MODEL + r"/config", _G.MODEL_CONFIG),
    _route("model_statistics", "GET", _MODEL + r"/stats", _G.STATISTICS),
    _route("model_metadata", "GET", _MODEL + r"/?", _G.METADATA),
    _route("repository_index", "POST", r"/v2/repository/index", _G.MODEL_REPOSITORY),
    _route("repository_load", "POST", r"/v2/repository/models/(?P<name>[^/]+)/load", _G.MODEL_REPOSITORY),
    _route("repository_unload", "POST", r"/v2/repository/models/(?P<name>[^/]+)/unload", _G.MODEL_REPOSITORY),
    _route("shared_memory_status", "GET", r"/v2/systemsharedmemory(?:/region/(?P<name>[^/]+))?/status",
           _G.SHARED_MEMORY),
    _route("shared_memory_register", "POST", r"/v2/systemsharedmemory/region/(?P<name>[^/]+)/register",
           _G.SHARED_MEMORY),
    _route("shared_memory_unregister", "POST", r"/v2/systemsharedmemory(?:/region/(?P<name>[^/]+))?/unregister",
           _G.SHARED_MEMORY),
    _route("cuda_shared_memory_status", "GET", r"/v2/cudasharedmemory(?:/region/(?P<name>[^/]+))?/status",
           _G.SHARED_MEMORY),
    _route("cuda_shared_memory_register", "POST", r"/v2/cudasharedmemory/region/(?P<name>[^/]+)/register",
           _G.SHARED_MEMORY),
    _route("cuda_shared_memory_unregister", "POST", r"/v2/cudasharedmemory(?:/region/(?P<name>[^/]+))?/unregister",
           _G.SHARED_MEMORY),
    _route("config_status", "GET", r"/v1/config", _G.CONFIG),
    _route("config_reload", "POST", r"/v1/config/reload", _G.CONFIG),
    _route("metrics", "GET", r"/metrics", None),
)  # fmt: skip

METHODS = frozenset({"GET", "POST", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    name: str = ""
    """The percent-decoded model name, for model routes."""
    version: str = ""
    """The version digits of `/versions/N`, or empty."""


def match(method: str, raw_path: str) -> Match:
    """The route for `method` on `raw_path` (without query string); raise the OVMS error when there is none."""
    if method not in METHODS:
        raise ServingError(Status.REST_UNSUPPORTED_METHOD, method)
    decoded = unquote(raw_path)
    if ".." in decoded.split("/"):
        raise ServingError(Status.PATH_INVALID, decoded)
    wrong_method = False
    for route in ROUTES:
        found = route.pattern.fullmatch(raw_path)
        if found is None:
            continue
        if route.method != method:
            wrong_method = True
            continue
        groups = found.groupdict()
        return Match(route, unquote(groups.get("name") or ""), groups.get("version") or "")
    if wrong_method:
        raise ServingError(Status.REST_UNSUPPORTED_METHOD, f"{method} {decoded}")
    raise ServingError(Status.REST_INVALID_URL, decoded)
