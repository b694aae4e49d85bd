"""Who may call what: restricted API groups (Triton's `--grpc-restricted-protocol` / `--http-restricted-api`) and the
API key (`--api_key_file`), decided the same way for every front end.

A front end names the group of each call it serves and whether the call is a liveness or readiness probe, hands
this module a way to read the call's headers, and turns a `Denial` into its own wire answer (gRPC UNAVAILABLE or
UNAUTHENTICATED, REST 403 or 401). Secrets are compared in constant time, never logged, and never part of a repr.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


class Group(enum.Enum):
    """The API groups a restriction names (Triton's, plus pyovms's `config`)."""

    HEALTH = "health"
    METADATA = "metadata"
    INFERENCE = "inference"
    SHARED_MEMORY = "shared-memory"
    MODEL_CONFIG = "model-config"
    MODEL_REPOSITORY = "model-repository"
    STATISTICS = "statistics"
    CONFIG = "config"
    """`GET /v1/config` and `POST /v1/config/reload` (REST only)."""


UNSERVED_GROUPS = frozenset({"trace", "logging"})
"""Triton's groups whose endpoints pyovms does not serve: accepted in a restriction (so that Triton command lines
work), with nothing to restrict."""

GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
"""gRPC restrictions are checked on `triton-grpc-protocol-<key>` metadata, as Triton does (HTTP/2 header names are
lowercase)."""

AUTHORIZATION = "authorization"
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class Secret:
    """A value clients must present; its repr and str never show it, and it is compared in constant time
    (`hmac.compare_digest`: the time depends on the lengths only, never on the bytes)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.encode()

    def matches(self, offered: str | bytes | None) -> bool:
        """Whether `offered` is the secret."""
        if offered is None:
            return False
        return hmac.compare_digest(offered.encode() if isinstance(offered, str) else offered, self._value)

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Restriction:
    """One group's required header and value."""

    header: str
    """The header as clients send it, lowercase (gRPC: `triton-grpc-protocol-<key>`)."""
    value: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a call is refused: no valid API key (`header` empty), or a restricted group whose header is missing or
    holds another value."""

    header: str = ""

    @property
    def unauthenticated(self) -> bool:
        return not self.header


MISSING_KEY = "Unauthenticated - the API key is missing: send the header 'Authorization: Bearer <key>'"
WRONG_KEY = "Unauthenticated - the API key is not valid"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The restrictions of one front end and the server's API key."""

    restrictions: Mapping[Group, Restriction] = field(default_factory=dict)
    api_key: Secret | None = None

    @property
    def active(self) -> bool:
        """Whether any call may be refused (front ends skip every check otherwise)."""
        return bool(self.restrictions) or self.api_key is not None

    def check(self, group: Group | None, probe: bool, header: Callable[[str], str | None]) -> Denial | None:
        """None when a call of `group` may run; `probe` calls (liveness, readiness) need no API key. `header` reads
        one header of the call by its lowercase name (None when absent)."""
        if self.api_key is not None and not probe and not self.key_matches(header(AUTHORIZATION)):
            return Denial()
        restriction = self.restrictions.get(group) if group is not None else None
        if restriction is not None and not restriction.value.matches(header(restriction.header)):
            return Denial(restriction.header)
        return None

    def key_matches(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header carries the API key (`Bearer <key>`, the scheme in any case)."""
        if self.api_key is None:
            return True
        parts = (authorization or "").split()
        return len(parts) == 2 and parts[0].lower() == "bearer" and self.api_key.matches(parts[1])

    def key_message(self, header: Callable[[str], str | None]) -> str:
        """The answer to a call refused for its API key."""
        return MISSING_KEY if header(AUTHORIZATION) is None else WRONG_KEY


class AccessError(ValueError):
    """A restriction or API key the server cannot start with (the message says which, never the secret)."""


def parse_restrictions(specs: list[str], option: str, header_prefix: str = "") -> dict[Group, Restriction]:
    """`<group>[,<group>...]:<key>=<value>` specs, as Triton writes them; a value `@<path>` is read from that file
    (its content, without the trailing newline), so that it does not show in the process list."""
    restrictions: dict[Group, Restriction] = {}
    for spec in specs:
        groups_text, colon, assignment = spec.partition(":")
        key, equals, value = assignment.partition("=")
        if not colon or not equals or not groups_text.strip() or not key.strip():
            raise AccessError(f"{option}: expected <groups>:<key>=<value>, got {_shown(spec)}")
        key = key.strip()
        if not _HEADER_NAME.fullmatch(key):
            raise AccessError(f"{option}: {key!r} is not a valid header name")
        secret = Secret(_value(value, option, key))
        restriction = Restriction(f"{header_prefix}{key}".lower(), secret)
        for name in (part.strip() for part in groups_text.split(",")):
            if name in UNSERVED_GROUPS:
                continue
            try:
                group = Group(name)
            except ValueError:
                known = ", ".join([g.value for g in Group] + sorted(UNSERVED_GROUPS))
                raise AccessError(f"{option}: unknown group {name!r} (known: {known})") from None
            if group in restrictions:
                raise AccessError(f"{option}: group {name} is restricted more than once")
            restrictions[group] = restriction
    return restrictions


def read_api_key(path: str) -> Secret:
    """The key of `--api_key_file`: its first line, stripped; a file that is missing or holds no key is refused."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"api_key_file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    key = text.splitlines()[0].strip() if text.strip() else ""
    if not key:
        raise AccessError(f"api_key_file: {path} holds no key")
    return Secret(key)


def _value(value: str, option: str, key: str) -> str:
    if not value.startswith("@"):
        if not value:
            raise AccessError(f"{option}: the value of {key} is empty")
        return value
    path = value[1:]
    try:
        text = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"{option}: cannot read the value of {key} from {path}: {exc}") from exc
    if not text:
        raise AccessError(f"{option}: the value file of {key} ({path}) is empty")
    return text


def _shown(spec: str) -> str:
    """A malformed spec for an error message, its value (if any) hidden."""
    head, equals, _ = spec.partition("=")
    return repr(head + ("=***" if equals else ""))
