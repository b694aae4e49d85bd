"""One running graph: packets with timestamps flowing along streams between calculator nodes, on asyncio.

A `GraphRun` is made per unary request and per stream (spec §6.3). Every node is one asyncio task that sleeps
until its input stream handler finds a set of inputs to process:

- `DefaultInputStreamHandler`: all inputs synchronised on one timestamp. The node runs at timestamp T once every
  input either holds a packet at T or is settled past T (its stream's bound is above T or it is closed); inputs
  without a packet at T are absent from that call.
- `SyncSetInputStreamHandler`: the same rule within each sync set (the configured sets plus one set of all other
  inputs); sets are processed independently. This is what the generative LOOPBACK pattern needs.
- `ImmediateInputStreamHandler`: every packet is processed on its own, as soon as it arrives.

After a node processed timestamp T, every output stream it did not write at T or later has its bound raised to
T+1 (as calculators with offset 0 do in MediaPipe), so nodes downstream of a partial output are not blocked.
Packets on one stream must have strictly increasing timestamps; a violation is a graph error. A node finishes
when all its inputs are closed and drained (back edges only need to be drained) and then closes its outputs.
The first calculator error stops the whole run and is reported to whoever waits on the outputs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import ServingError, Status
from ...scheduling.user_code import describe
from .graph_config import IMMEDIATE_INPUT_STREAM_HANDLER, SYNC_SET_INPUT_STREAM_HANDLER, NodeConfig, StreamRef


class Calculator(Protocol):
    """What a run asks of a node's behaviour (`calculators.Calculator` implements it)."""

    async def process(self, node: NodeRun, timestamp: int, inputs: Inputs) -> None: ...

    async def close(self, node: NodeRun) -> None: ...


log = logging.getLogger("pyovms.graphs")

TIMESTAMP_MIN = -(2**63) + 3
TIMESTAMP_MAX = 2**63 - 4
"""MediaPipe's range of timestamps a packet may carry (`Timestamp::Min()`..`Timestamp::Max()`)."""
DONE = 2**63 - 1
"""The bound of a closed stream."""


@dataclass(frozen=True, slots=True)
class Packet:
    payload: Any
    timestamp: int


class Stream:
    """A named stream: its producer writes packets, every consumer port gets each one."""

    __slots__ = ("bound", "listeners", "name", "ports")

    def __init__(self, name: str) -> None:
        self.name = name
        self.bound = TIMESTAMP_MIN
        """The lowest timestamp the next packet may have."""
        self.ports: list[InputPort] = []
        self.listeners: list[Callable[[Packet | None], None]] = []
        """Graph outputs: called with each packet, and with None when the stream closes."""

    @property
    def closed(self) -> bool:
        return self.bound == DONE

    def add(self, packet: Packet) -> None:
        if self.closed:
            raise ServingError(Status.MEDIAPIPE_EXECUTION_ERROR, f"stream {self.name} is closed")
        if packet.timestamp < self.bound:
            raise ServingError(
                Status.MEDIAPIPE_EXECUTION_ERROR,
                f"Packet timestamp mismatch on stream {self.name}: timestamp {packet.timestamp} is not greater "
                f"than the previous one {self.bound - 1}",
            )
        self.bound = packet.timestamp + 1
        for port in self.ports:
            port.queue.append(packet)
            port.node.wake()
        for listener in self.listeners:
            listener(packet)

    def advance(self, bound: int) -> None:
        """Promise that no packet below `bound` will come."""
        if bound > self.bound and not self.closed:
            self.bound = bound
            for port in self.ports:
                port.node.wake()

    def close(self) -> None:
        if self.closed:
            return
        self.bound = DONE
        for port in self.ports:
            port.node.wake()
        for listener in self.listeners:
            listener(None)


class InputPort:
    """A node's input: the queue of packets it has not processed yet."""

    __slots__ = ("back_edge", "node", "queue", "stream", "tag_index")

    def __init__(self, tag_index: str, stream: Stream, node: NodeRun, back_edge: bool) -> None:
        self.tag_index = tag_index
        self.stream = stream
        self.node = node
        self.back_edge = back_edge
        self.queue: deque[Packet] = deque()

    def settled_past(self, timestamp: int) -> bool:
        """No packet at `timestamp` is queued or can still come."""
        if self.queue:
            return self.queue[0].timestamp > timestamp
        return self.stream.bound > timestamp

    @property
    def finished(self) -> bool:
        """Nothing left to process (a back edge never closes while its node runs: drained is enough)."""
        return not self.queue and (self.back_edge or self.stream.closed)


Inputs = dict[str, Packet]
"""The packets of one process call by the input's `TAG:INDEX` (absent inputs are missing)."""


def _ready_at(ports: list[InputPort]) -> int | None:
    """The earliest timestamp every port is settled for (a packet at it, or none can come); None while one must
    wait."""
    heads = [port.queue[0].timestamp for port in ports if port.queue]
    if not heads:
        return None
    timestamp = min(heads)
    if all((port.queue and port.queue[0].timestamp == timestamp) or port.settled_past(timestamp) for port in ports):
        return timestamp
    return None


class NodeRun:
    """One node of a running graph: its ports, output streams and task."""

    def __init__(self, config: NodeConfig, calculator: Calculator, graph: GraphRun) -> None:
        self.config = config
        self.calculator = calculator
        self.graph = graph
        self.ports = [
            InputPort(ref.tag_index, graph.stream(ref.name), self, ref.tag_index in config.back_edges)
            for ref in config.input_streams
        ]
        for port in self.ports:
            port.stream.ports.append(port)
        self.outputs: dict[str, Stream] = {ref.tag_index: graph.stream(ref.name) for ref in config.output_streams}
        self.sets = self._input_sets()
        self._event = asyncio.Event()

    def _input_sets(self) -> list[list[InputPort]]:
        handler = self.config.input_stream_handler
        if handler == IMMEDIATE_INPUT_STREAM_HANDLER:
            return [[port] for port in self.ports]
        if handler == SYNC_SET_INPUT_STREAM_HANDLER:
            by_tag = {port.tag_index: port for port in self.ports}
            sets = [[by_tag[t] for t in tags if t in by_tag] for tags in self.config.sync_sets]
            grouped = {port.tag_index for group in sets for port in group}
            rest = [port for port in self.ports if port.tag_index not in grouped]
            return [group for group in (*sets, rest) if group]
        return [self.ports] if self.ports else []

    def wake(self) -> None:
        self._event.set()

    def _next(self) -> tuple[int, Inputs] | None:
        """The packets of the earliest ready input set over all sync sets (taken off their queues)."""
        ready = [(timestamp, group) for group in self.sets if (timestamp := _ready_at(group)) is not None]
        if not ready:
            return None
        timestamp, group = min(ready, key=lambda item: item[0])
        inputs = {
            port.tag_index: port.queue.popleft()
            for port in group
            if port.queue and port.queue[0].timestamp == timestamp
        }
        return timestamp, inputs

    def _finished(self) -> bool:
        return all(port.finished for port in self.ports)

    async def run(self) -> None:
        try:
            while self.ports:
                self._event.clear()
                found = self._next()
                if found is None:
                    if self._finished():
                        break
                    await self._event.wait()
                    continue
                timestamp, inputs = found
                await self.calculator.process(self, timestamp, inputs)
                for stream in self.outputs.values():
                    stream.advance(timestamp + 1)
            await self.calculator.close(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded before the outputs close, so readers see the error, not a short run
            self.graph.fail(exc)
        finally:
            for stream in self.outputs.values():
                stream.close()

    def emit(self, tag_index: str, payload: Any, timestamp: int) -> None:
        """Send a packet on the output stream of that `TAG:INDEX`."""
        self.outputs[tag_index].add(Packet(payload, timestamp))


class GraphRun:
    """The streams and node tasks of one graph instance, fed with input packets and read output by output."""

    def __init__(
        self,
        nodes: Iterable[tuple[NodeConfig, Calculator]],
        input_streams: Iterable[StreamRef],
        output_streams: Iterable[StreamRef],
        side_packets: Mapping[str, Any],
    ) -> None:
        self.side_packets = dict(side_packets)
        self._streams: dict[str, Stream] = {}
        self.inputs = {ref.name: self.stream(ref.name) for ref in input_streams}
        self.nodes = [NodeRun(config, calculator, self) for config, calculator in nodes]
        self._outputs: asyncio.Queue[tuple[str, Packet] | None] = asyncio.Queue()
        self._open_outputs = 0
        for ref in output_streams:
            self._listen(self.stream(ref.name))
        self.error: ServingError | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def stream(self, name: str) -> Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = Stream(name)
        return stream

    def _listen(self, stream: Stream) -> None:
        self._open_outputs += 1

        def listener(packet: Packet | None) -> None:
            if packet is not None:
                self._outputs.put_nowait((stream.name, packet))
                return
            self._open_outputs -= 1
            if self._open_outputs == 0:
                self._outputs.put_nowait(None)

        stream.listeners.append(listener)

    def start(self) -> None:
        for node in self.nodes:
            task = asyncio.create_task(node.run(), name=f"graph node {node.config.name or node.config.calculator}")
            self._tasks.append(task)

    def fail(self, exc: Exception) -> None:
        """Stop the run on its first error; waiting readers get it."""
        if self.error is not None:
            return
        if isinstance(exc, ServingError):
            self.error = exc
        else:
            log.error("graph node failed", exc_info=exc)
            self.error = ServingError(Status.MEDIAPIPE_EXECUTION_ERROR, describe(exc, typed=True))
        self._outputs.put_nowait(None)
        for task in self._tasks:
            task.cancel()

    def add(self, name: str, payload: Any, timestamp: int) -> None:
        """Send one packet into a graph input stream (a timestamp that does not increase is a graph error)."""
        try:
            self.inputs[name].add(Packet(payload, timestamp))
        except ServingError as exc:
            self.fail(exc)
            raise

    def close_inputs(self) -> None:
        for stream in self.inputs.values():
            stream.close()

    async def next_output(self) -> tuple[str, Packet] | None:
        """The next packet of any graph output stream, None once they are all closed; raise the graph's error."""
        if self.error is not None:
            raise self.error
        item = await self._outputs.get()
        if self.error is not None:
            raise self.error
        if item is None:
            self._outputs.put_nowait(None)  # later readers see the end too
        return item

    async def cancel(self) -> None:
        """Stop every node (a client went away, or a unary call has what it needs) and wait for them."""
        stopped = [node for node, task in zip(self.nodes, self._tasks, strict=True) if not task.done()]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for node in stopped:  # closed here, as they did not finish (a generator stopped half-way)
            try:
                await node.calculator.close(node)
            except Exception:
                log.debug("closing node %s after cancel failed", node.config.name, exc_info=True)

    def release(self) -> None:
        """Break the run's reference cycles (graph <-> nodes <-> ports <-> streams, listeners, tasks) once it is
        over. Freed by reference counting, a run's memory, and whatever its packets and calculators hold, goes back
        at once instead of waiting for a full garbage collection, which a busy server runs rarely."""
        for stream in self._streams.values():
            stream.ports.clear()
            stream.listeners.clear()
        for node in self.nodes:
            node.ports, node.sets, node.outputs = [], [], {}
        self.nodes, self._tasks, self._streams, self.inputs = [], [], {}, {}
