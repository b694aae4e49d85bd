"""The infer-request pool, in-process on real compiled models: asynchronous and inline execution, the switch
between them, and failures answered in both modes (never a hang)."""

from __future__ import annotations

import asyncio

import numpy as np
import openvino as ov
import pytest

from pyovms.errors import ServingError, Status
from pyovms.scheduling.infer_requests import WARMUP_INFERENCES, InferRequestPool, PoolSettings

from ..support import models


def _inputs(array: np.ndarray) -> list[tuple[int, np.ndarray]]:
    return [(0, array)]


def _first_output(request: ov.InferRequest, _arg) -> np.ndarray:
    return request.get_output_tensor(0).data.copy()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("scheduling")
    core = ov.Core()
    return {
        "dummy": core.compile_model(str(models.build_dummy(root / "dummy.xml")), "CPU"),
        "odd_fails": core.compile_model(str(models.build_runtime_failure(root / "odd.xml")), "CPU"),
    }


@pytest.mark.parametrize("threshold", [0.0, 10.0], ids=["always-async", "inline-after-warm-up"])
def test_results_are_right_in_both_modes(compiled, threshold):
    async def scenario() -> list[bool]:
        pool = InferRequestPool(compiled["dummy"], 2, _first_output, PoolSettings(threshold))
        modes = []
        for i in range(WARMUP_INFERENCES + 4):
            values = np.full((1, 10), i, dtype=np.float32)
            outputs = await asyncio.gather(*(pool.run(_inputs(values)) for _ in range(3)))
            for output in outputs:
                np.testing.assert_array_equal(output, values + 1)
            modes.append(pool.inline)
        return modes

    modes = asyncio.run(scenario())
    assert modes[0] is False  # every pool starts asynchronous
    assert modes[-1] is (threshold > 0)


def test_switches_back_to_asynchronous_when_inferences_get_slow(compiled):
    pool = InferRequestPool(compiled["dummy"], 1, _first_output, PoolSettings(300e-6))
    for _ in range(WARMUP_INFERENCES):
        pool.record(50e-6)
    assert pool.inline
    for _ in range(40):
        pool.record(5e-3)
    assert not pool.inline


@pytest.mark.parametrize("threshold", [0.0, 10.0], ids=["async", "inline"])
def test_failures_are_raised_and_the_pool_keeps_serving(compiled, threshold):
    async def scenario() -> None:
        pool = InferRequestPool(compiled["odd_fails"], 1, _first_output, PoolSettings(threshold))
        for _ in range(WARMUP_INFERENCES):
            await pool.run(_inputs(np.ones(4, dtype=np.float32)))
        assert pool.inline is (threshold > 0)
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(pool.run(_inputs(np.ones(3, dtype=np.float32))), timeout=10)
        output = await asyncio.wait_for(pool.run(_inputs(np.arange(4, dtype=np.float32))), timeout=10)
        np.testing.assert_array_equal(output, np.arange(4, dtype=np.float32).reshape(2, 2))

    asyncio.run(scenario())


def test_waiting_is_bounded_and_the_rest_is_refused_at_once(compiled):
    async def scenario() -> list[object]:
        pool = InferRequestPool(compiled["dummy"], 1, _first_output, PoolSettings(0.0, max_queued=2))
        values = np.zeros((1, 10), dtype=np.float32)
        results = await asyncio.gather(*(pool.run(_inputs(values)) for _ in range(10)), return_exceptions=True)
        assert pool.waiting == 0 and pool.active == 0
        assert isinstance(await pool.run(_inputs(values)), np.ndarray)  # served again once the queue drained
        return results

    results = asyncio.run(scenario())
    served = [r for r in results if isinstance(r, np.ndarray)]
    refused = [r for r in results if isinstance(r, ServingError)]
    assert len(served) == 3  # one running, two waiting
    assert len(refused) == 7
    assert refused[0].status == Status.INFER_QUEUE_FULL
    assert refused[0].message == (
        "Too many requests are waiting for an infer request - 2 requests wait for one of 1 infer requests; "
        "the limit is 2 (--max_queued_requests)"
    )
