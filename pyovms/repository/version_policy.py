"""Model version policy: which of the version directories on disk are served."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """`all`, `latest` (the n highest) or `specific` (a listed set); OVMS's default is latest 1."""

    kind: str = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, value: Mapping[str, Any] | None) -> VersionPolicy:
        """Build from the config form `{"latest": {"num_versions": 2}}`; raise ValueError when malformed."""
        if not value:
            return cls()
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ValueError("model_version_policy must have exactly one of: all, latest, specific")
        kind, body = next(iter(value.items()))
        if not isinstance(body, Mapping):
            raise ValueError(f"model_version_policy {kind} must be an object")
        if kind == "all" and not body:
            return cls("all")
        if kind == "latest" and set(body) <= {"num_versions"}:
            n = body.get("num_versions", 1)
            if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
                return cls("latest", num_versions=n)
            raise ValueError("latest.num_versions must be an integer >= 1")
        if kind == "specific" and set(body) == {"versions"}:
            versions = body["versions"]
            if isinstance(versions, list) and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in versions
            ):
                return cls("specific", versions=frozenset(versions))
            raise ValueError("specific.versions must be a list of positive integers")
        raise ValueError(f"unsupported model_version_policy: {dict(value)}")

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve, ascending."""
        ordered = sorted(set(available))
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :]

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest: {self.num_versions}"
        if self.kind == "specific":
            return f"specific: {sorted(self.versions)}"
        return "all"
