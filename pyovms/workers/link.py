"""A worker's end of its channel to the supervisor (a socket pair, JSON lines)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable

CHANNEL_FD_ENV = "PYOVMS_SUPERVISOR_FD"
"""Set in a worker's environment to its end of a socket pair with the supervisor."""
WORKER_ENV = "PYOVMS_GRPC_WORKER"
"""Set in a worker's environment to its index; a worker never starts workers of its own."""


def is_worker() -> bool:
    return WORKER_ENV in os.environ


class SupervisorLink:
    """A worker's end of its channel to the supervisor: it says when its initial load has finished, and hears
    whether every worker is ready (a worker answers ready only then: the server's readiness is every worker's)."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    def from_environment(cls) -> SupervisorLink | None:
        """The link of a worker started by a supervisor; None in any other process."""
        fd = os.environ.pop(CHANNEL_FD_ENV, None)
        return cls(socket.socket(fileno=int(fd))) if fd is not None else None

    async def start(self, on_every_worker_ready: Callable[[bool], None]) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._channel)
        self._reading = asyncio.create_task(self._read(reader, on_every_worker_ready))

    async def _read(self, reader: asyncio.StreamReader, on_every_worker_ready: Callable[[bool], None]) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if message.get("event") == "readiness":
                on_every_worker_ready(bool(message["every_worker_ready"]))

    def notify_ready(self) -> None:
        """The initial load has finished (from then on, the supervisor replaces this worker if it dies)."""
        if self._writer is not None:
            self._writer.write(b'{"event": "ready"}\n')

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self._writer is not None:
            self._writer.close()
