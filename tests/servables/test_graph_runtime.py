"""The graph runtime in-process: input stream handlers, timestamp bounds, back edges and errors, with a recording
calculator (what each process call received)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from pyovms.errors import ServingError, Status
from pyovms.servables.graphs.calculators import Calculator
from pyovms.servables.graphs.graph_config import parse_graph_config
from pyovms.servables.graphs.runtime import GraphRun, NodeRun


class Recorder(Calculator):
    """Records (timestamp, sorted input tags, payloads) and forwards the sum of its inputs on its one output (once
    per timestamp: a stream takes one packet per timestamp)."""

    name = "Recorder"
    calls: list[tuple[int, list[str], list[int]]]

    async def process(self, node: NodeRun, timestamp: int, inputs) -> None:
        tags = sorted(inputs)
        self.calls.append((timestamp, tags, [inputs[tag].payload for tag in tags]))
        if self.config.output_streams and timestamp > getattr(self, "last", -1):
            self.last = timestamp
            node.emit(self.config.output_streams[0].tag_index, sum(p.payload for p in inputs.values()), timestamp)


def _graph(node_extra: str = "") -> str:
    return f"""
input_stream: "A:a"
input_stream: "B:b"
output_stream: "OUT:out"
node {{
  calculator: "Recorder"
  input_stream: "A:a"
  input_stream: "B:b"
  output_stream: "OUT:out"
  {node_extra}
}}
"""


async def _run(text: str, packets: list[tuple[str, int, int]]) -> tuple[list, list[tuple[str, int, int]]]:
    """Feed (stream, payload, timestamp) packets, close the inputs, collect the outputs and the recorded calls."""
    config = parse_graph_config(text)
    recorder = Recorder(config.nodes[0], None)
    recorder.calls = []
    run = GraphRun([(config.nodes[0], recorder)], config.input_streams, config.output_streams, {})
    run.start()
    for name, payload, timestamp in packets:
        run.add(name, payload, timestamp)
    run.close_inputs()
    outputs = []
    while (item := await run.next_output()) is not None:
        outputs.append((item[0], item[1].payload, item[1].timestamp))
    await run.cancel()
    return recorder.calls, outputs


def test_default_handler_joins_inputs_of_one_timestamp_and_runs_partial_sets_once_settled():
    calls, outputs = asyncio.run(_run(_graph(), [("a", 1, 10), ("b", 2, 10), ("a", 5, 20), ("b", 7, 30)]))
    assert calls == [(10, ["A:0", "B:0"], [1, 2]), (20, ["A:0"], [5]), (30, ["B:0"], [7])]
    assert outputs == [("out", 3, 10), ("out", 5, 20), ("out", 7, 30)]


def test_immediate_handler_runs_every_packet_on_its_own():
    handler = 'input_stream_handler { input_stream_handler: "ImmediateInputStreamHandler" }'
    calls, _ = asyncio.run(_run(_graph(handler), [("a", 1, 10), ("b", 2, 10)]))
    assert sorted(calls) == [(10, ["A:0"], [1]), (10, ["B:0"], [2])]


def test_sync_sets_are_processed_independently():
    handler = """input_stream_handler {
    input_stream_handler: "SyncSetInputStreamHandler"
    options { [mediapipe.SyncSetInputStreamHandlerOptions.ext] { sync_set { tag_index: "A:0" } } }
  }"""
    calls, _ = asyncio.run(_run(_graph(handler), [("a", 1, 10), ("a", 3, 11), ("b", 2, 5)]))
    assert calls == [(5, ["B:0"], [2]), (10, ["A:0"], [1]), (11, ["A:0"], [3])]


def test_a_timestamp_that_does_not_increase_fails_the_run():
    with pytest.raises(ServingError) as info:
        asyncio.run(_run(_graph(), [("a", 1, 10), ("a", 2, 10)]))
    assert info.value.status == Status.MEDIAPIPE_EXECUTION_ERROR
    assert info.value.details == (
        "Packet timestamp mismatch on stream a: timestamp 10 is not greater than the previous one 10"
    )


def test_a_back_edge_loops_until_the_node_stops_emitting():
    """A node counting down over its own LOOPBACK stream: the run ends once the count reaches zero."""

    class Countdown(Calculator):
        name = "Countdown"
        seen: list[tuple[int, int]] = []

        async def process(self, node: NodeRun, timestamp: int, inputs) -> None:
            value = next(iter(inputs.values())).payload
            Countdown.seen.append((timestamp, value))
            node.emit("OUT:0", value, timestamp)
            if value > 0:
                node.emit("LOOPBACK:0", value - 1, timestamp + 1)

    text = """
input_stream: "IN:start"
output_stream: "OUT:out"
node {
  calculator: "Countdown"
  input_stream: "IN:start"
  input_stream: "LOOPBACK:loop"
  input_stream_info { tag_index: "LOOPBACK:0" back_edge: true }
  input_stream_handler {
    input_stream_handler: "SyncSetInputStreamHandler"
    options { [mediapipe.SyncSetInputStreamHandlerOptions.ext] { sync_set { tag_index: "LOOPBACK:0" } } }
  }
  output_stream: "OUT:out"
  output_stream: "LOOPBACK:loop"
}
"""

    async def scenario() -> list[tuple[str, int, int]]:
        config = parse_graph_config(text)
        run = GraphRun([(config.nodes[0], Countdown(config.nodes[0], None))], config.input_streams,
                       config.output_streams, {})  # fmt: skip
        run.start()
        run.add("start", 3, 100)
        run.close_inputs()
        outputs = []
        while (item := await asyncio.wait_for(run.next_output(), 5)) is not None:
            outputs.append((item[0], item[1].payload, item[1].timestamp))
        return outputs

    assert asyncio.run(scenario()) == [("out", 3, 100), ("out", 2, 101), ("out", 1, 102), ("out", 0, 103)]


def test_a_released_run_leaves_no_reference_cycles():
    """Once released, a run is freed by reference counting alone: nothing waits for the cyclic garbage collector,
    which a busy server runs rarely (a retired graph's handler and its memory would stay until it did)."""
    config = parse_graph_config(_graph())

    async def one_run() -> None:
        recorder = Recorder(config.nodes[0], None)
        recorder.calls = []
        run = GraphRun([(config.nodes[0], recorder)], config.input_streams, config.output_streams, {})
        run.start()
        run.add("a", 1, 0)
        run.add("b", 2, 0)
        run.close_inputs()
        assert (await run.next_output())[1].payload == 3
        await run.cancel()
        run.release()

    async def main() -> None:
        await one_run()  # warm-up: lazily created module state is not garbage
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await one_run()
            await asyncio.sleep(0)
            assert gc.collect() == 0
        finally:
            gc.enable()

    asyncio.run(main())
