"""A worker's end of its channel to the supervisor (a socket pair, JSON lines)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

CHANNEL_FD_ENV = "PYOVMS_SUPERVISOR_FD"
"""Set in a worker's environment to its end of a socket pair with the supervisor."""
WORKER_ENV = "PYOVMS_GRPC_WORKER"
"""Set in a worker's environment to its index; a worker never starts workers of its own."""
CORES_ENV = "PYOVMS_WORKER_CORES"
"""Set in a worker's environment to the cores its event loop is pinned to (comma-separated), unless
`--worker_affinity none`."""


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def worker_cores() -> list[int] | None:
    """The cores this worker's event loop belongs on; None: anywhere (not a worker, or `--worker_affinity none`)."""
    value = os.environ.get(CORES_ENV)
    return [int(core) for core in value.split(",")] if value else None


Apply = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Runs a relayed control call in this worker; returns its outcome (`{"ok": true, "value": ...}` or `{"ok": false,
"status": ..., "details": ...}`)."""


class SupervisorLink:
    """A worker's end of its channel to the supervisor. The worker says when its initial load has finished, and
    hears whether every worker is ready (it answers ready only then: the server's readiness is every worker's). A
    control call a client sends to this worker goes to every worker through the supervisor (`everywhere`), and the
    calls other workers received are applied here, one at a time, in the supervisor's order."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._applies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)

    @classmethod
    def from_environment(cls) -> SupervisorLink | None:
        """The link of a worker started by a supervisor; None in any other process."""
        fd = os.environ.pop(CHANNEL_FD_ENV, None)
        return cls(socket.socket(fileno=int(fd))) if fd is not None else None

    async def start(self, on_every_worker_ready: Callable[[bool], None], apply: Apply) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._channel, limit=1 << 24)
        self._tasks = [
            asyncio.create_task(self._read(reader, on_every_worker_ready)),
            asyncio.create_task(self._apply_in_order(apply)),
        ]

    async def _read(self, reader: asyncio.StreamReader, on_every_worker_ready: Callable[[bool], None]) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if message.get("event") == "readiness":
                on_every_worker_ready(bool(message["every_worker_ready"]))
            elif message.get("op") == "apply":
                self._applies.put_nowait(message)
            elif message.get("event") == "relayed":
                future = self._waiting.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message["outcomes"])

    async def _apply_in_order(self, apply: Apply) -> None:
        while True:
            message = await self._applies.get()
            outcome = await apply(message["call"])
            self._send({"event": "applied", "id": message["id"], "outcome": outcome})

    async def everywhere(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        """Have every worker apply `call`; the outcomes once all have, this worker's first."""
        request_id = next(self._ids)
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._send({"op": "relay", "id": request_id, "call": call})
        return await future

    def notify_ready(self) -> None:
        """The initial load has finished (from then on, the supervisor replaces this worker if it dies)."""
        self._send({"event": "ready"})

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is not None:
            self._writer.write(json.dumps(message).encode() + b"\n")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            self._writer.close()
