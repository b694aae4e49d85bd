"""The user-code pool: results and errors come back, and a hung call whose caller has gone is written off and its
thread replaced, so the pool keeps serving (real threads, real event loops)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pyovms.scheduling.user_code import UserCodePool


def _threads(pool: UserCodePool) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"pyovms-{pool.kind}-")]


async def _until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_results_and_errors_come_back():
    pool = UserCodePool("t-results", workers=2)

    async def main() -> None:
        assert await pool.run(pow, 2, 10) == 1024
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        assert await asyncio.gather(*(pool.run(lambda i=i: i * i) for i in range(20))) == [i * i for i in range(20)]

    asyncio.run(main())
    assert len(_threads(pool)) == 2


def test_exceptions_a_future_or_the_server_cannot_take_become_runtime_errors():
    """StopIteration cannot be set on a future (the request would never be answered); SystemExit would stop the
    server's event loop."""
    pool = UserCodePool("t-exits", workers=1)

    def leave() -> None:
        raise SystemExit(3)

    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"^StopIteration$"):
            await asyncio.wait_for(pool.run(next, iter([])), 5)
        with pytest.raises(RuntimeError, match=r"^SystemExit: 3$"):
            await asyncio.wait_for(pool.run(leave), 5)
        assert await pool.run(lambda: "still serving") == "still serving"

    asyncio.run(main())


def test_hung_call_whose_caller_gave_up_is_replaced_and_its_thread_ends_when_it_returns():
    pool = UserCodePool("t-hung", workers=1)
    release = threading.Event()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(release.wait), 0.2)
        assert pool.abandoned == 1
        started = time.monotonic()
        assert await pool.run(lambda: "served") == "served"  # one worker, and it is hung: a new thread serves
        assert time.monotonic() - started < 1.0
        assert len(_threads(pool)) == 2
        release.set()
        await _until(lambda: pool.abandoned == 0 and len(_threads(pool)) == 1)
        assert await pool.run(lambda: "still") == "still"

    asyncio.run(main())


def test_replacements_are_bounded_then_calls_wait_for_a_free_thread():
    pool = UserCodePool("t-bounded", workers=1, max_replaced=1)
    first, second = threading.Event(), threading.Event()

    async def main() -> None:
        for hang in (first, second):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.run(hang.wait), 0.2)
        assert pool.abandoned == 2
        assert len(_threads(pool)) == 2  # the first was replaced; the second keeps its place
        waiting = asyncio.ensure_future(pool.run(lambda: "after"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        second.set()  # the unreplaced thread returns to the pool and serves the waiting call
        assert await asyncio.wait_for(waiting, 2) == "after"
        first.set()
        await _until(lambda: pool.abandoned == 0 and len(_threads(pool)) == 1)

    asyncio.run(main())


def test_a_call_cancelled_before_it_starts_never_runs():
    pool = UserCodePool("t-queued", workers=1)
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        busy = asyncio.ensure_future(pool.run(release.wait))
        await _until(lambda: len(_threads(pool)) == 1)
        queued = asyncio.ensure_future(pool.run(ran.append, "queued"))
        await asyncio.sleep(0.05)
        queued.cancel()
        await asyncio.sleep(0.05)
        release.set()
        assert await busy is True
        assert await pool.run(ran.append, "next") is None
        assert ran == ["next"]
        assert pool.abandoned == 0

    asyncio.run(main())


def test_a_hung_call_does_not_keep_the_process_from_exiting(tmp_path):
    import subprocess
    import sys

    script = (
        "import asyncio, threading\n"
        "from pyovms.scheduling.user_code import run_user_code\n"
        "async def main():\n"
        "    try:\n"
        "        await asyncio.wait_for(run_user_code('python_node', threading.Event().wait), 0.1)\n"
        "    except TimeoutError:\n"
        "        print('deadline', flush=True)\n"
        "asyncio.run(main())\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "deadline\n"
    assert time.monotonic() - started < 20
