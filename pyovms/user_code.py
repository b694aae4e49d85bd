"""Where user code runs: custom node libraries and Python graph nodes, each on a thread pool of its own.

User code may be slow or may hang. Python cannot interrupt a thread, so a call that never returns keeps its
thread; separate, bounded pools make sure such calls only hold up more calls of the same kind, never image
decoding, string splitting, model loading or OpenVINO's own threads. A client's deadline or cancellation still
ends its request on time: the awaiting coroutine is cancelled, and the thread is reused once the call returns.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

WORKERS = max(4, 2 * (os.cpu_count() or 1))
"""Threads per kind of user code."""

_pools: dict[str, ThreadPoolExecutor] = {}


def _pool(kind: str) -> ThreadPoolExecutor:
    pool = _pools.get(kind)
    if pool is None:
        pool = _pools[kind] = ThreadPoolExecutor(WORKERS, thread_name_prefix=f"pyovms-{kind}")
    return pool


async def run_user_code(kind: str, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on the `kind` pool ("custom_node", "python_node"), awaited without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(kind), functools.partial(function, *args))
