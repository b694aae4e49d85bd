"""Server paths out of client-facing text.

Load failures carry the paths the loader saw (`/srv/models/resnet/1/model.xml: ...`): the log keeps them whole, but a
client learns nothing of the server's file system from an answer. A path under the model repository becomes relative
to it (`resnet/1/model.xml`); any other absolute path keeps only its last part (`.../model.xml`). URLs
(`s3://bucket/path`) are left as they are: the client's own configuration names them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

HIDDEN = "..."
_ABSOLUTE = re.compile(r"(?<![\w:/.~-])/[^\s'\"`,;()\[\]{}<>|]*")


def redact_paths(text: str, roots: Iterable[Path | str] = ()) -> str:
    """`text` with absolute paths made relative to the first of `roots` that holds them, or cut to their last part."""
    prefixes = sorted({p for root in roots for p in _spellings(root)}, key=len, reverse=True)

    def replace(found: re.Match[str]) -> str:
        path = found.group(0)
        for prefix in prefixes:
            if path == prefix:
                return "."
            if path.startswith(prefix + "/"):
                return path[len(prefix) + 1 :]
        last = path.rstrip("/").rpartition("/")[2]
        return f"{HIDDEN}/{last}" if last else HIDDEN

    return _ABSOLUTE.sub(replace, text)


def _spellings(root: Path | str) -> set[str]:
    """A root as given and as resolved (symlinks followed), without a trailing slash."""
    given = str(root).rstrip("/")
    try:
        resolved = str(Path(root).resolve()).rstrip("/")
    except OSError:
        resolved = given
    return {s for s in (given, resolved) if s}
