"""Dimensions and shapes as OVMS writes them: static `10`, any `-1`, range `1:8` (shown as `[1~8]`).

Used for config/CLI values (`shape`, `batch_size`), for model tensor metadata and for the texts of
validation errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ANY = -1


@dataclass(frozen=True, slots=True)
class Dim:
    """One dimension: `lo == hi` static, `hi == ANY` unbounded above, otherwise a closed range."""

    lo: int
    hi: int

    @classmethod
    def static(cls, n: int) -> Dim:
        return cls(n, n)

    @classmethod
    def any(cls) -> Dim:
        return cls(0, ANY)

    @classmethod
    def parse(cls, text: str) -> Dim:
        """Parse `n`, `-1` or `a:b`; raise ValueError otherwise."""
        text = text.strip()
        if ":" in text:
            lo_text, hi_text = text.split(":", 1)
            lo, hi = int(lo_text), int(hi_text)
            if lo < 0 or hi < 0 or lo > hi:
                raise ValueError(f"invalid dimension range: {text}")
            return cls(lo, hi)
        n = int(text)
        if n == ANY:
            return cls.any()
        if n < 0:
            raise ValueError(f"invalid dimension: {text}")
        return cls.static(n)

    @property
    def is_static(self) -> bool:
        return self.lo == self.hi

    @property
    def is_any(self) -> bool:
        return self.lo == 0 and self.hi == ANY

    def accepts(self, n: int) -> bool:
        """Whether a request dimension of size n fits."""
        return n >= self.lo and (self.hi == ANY or n <= self.hi)

    def overlaps(self, other: Dim) -> bool:
        """Whether some size fits both dimensions (connected pipeline tensors must be able to agree)."""
        lo = max(self.lo, other.lo)
        return all(d.hi == ANY or lo <= d.hi for d in (self, other))

    def clamp(self, n: int) -> int:
        """`n` moved into the range (binary images are resized to the nearer bound of a range dimension)."""
        return max(self.lo, n if self.hi == ANY else min(n, self.hi))

    @property
    def metadata_value(self) -> int:
        """The value model metadata reports: the size when static, -1 otherwise."""
        return self.lo if self.is_static else ANY

    def __str__(self) -> str:
        if self.is_static:
            return str(self.lo)
        if self.is_any:
            return "-1"
        return f"[{self.lo}~{'-1' if self.hi == ANY else self.hi}]"


Shape = tuple[Dim, ...]


def parse_shape(text: str) -> Shape:
    """Parse an OVMS shape string such as `(1,3,224,224)`, `[1,-1]` or `(1,100:200,3)`."""
    body = text.strip()
    if not re.fullmatch(r"[(\[].*[)\]]", body):
        raise ValueError(f"shape must be enclosed in parentheses: {text}")
    inner = body[1:-1].strip()
    if not inner:
        return ()
    return tuple(Dim.parse(part) for part in inner.split(","))


def format_dims(dims: Iterable[Dim | int]) -> str:
    """Render dims the way OVMS error details do: `(1,10)`, `(1,-1)`, `(1,[1~5])`."""
    return "(" + ",".join(str(d) for d in dims) + ")"


def element_count(shape: Sequence[int]) -> int:
    """The product of a request shape (exact Python int, no overflow)."""
    count = 1
    for n in shape:
        count *= n
    return count
