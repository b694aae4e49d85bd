"""The log: one format for every line (`[time][pid][logger][LEVEL] message`), pyovms's level and the libraries' own.

Set up once by the command line's process (`pyovms.server.run`); the Python API leaves the host program's logging
as it is.
"""

from __future__ import annotations

import logging
import sys

TRACE = 5


REPORTED_BY_PYOVMS = ("gcsfs",)
"""Libraries that log each error they raise with its traceback (at every retry), where pyovms logs it in one line
with its cause: quiet unless `--library_log_level` is INFO or lower."""


def _level(name: str) -> int:
    return TRACE if name == "TRACE" else getattr(logging, name)


def configure_logging(log_level: str, library_log_level: str, log_path: str | None) -> None:
    """pyovms's loggers at `--log_level`; every library's (storage SDKs, OpenVINO's Python side ...) at
    `--library_log_level`, WARNING by default, so that their per-request INFO lines (one per storage call) stay out."""
    logging.addLevelName(TRACE, "TRACE")
    level = _level(log_level)
    handler: logging.Handler
    handler = logging.FileHandler(log_path) if log_path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(process)d][%(name)s][%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    library_level = _level(library_log_level)
    root.setLevel(library_level)
    logging.getLogger("pyovms").setLevel(level)
    for name in REPORTED_BY_PYOVMS:
        logging.getLogger(name).setLevel(logging.CRITICAL if library_level >= logging.WARNING else logging.NOTSET)
