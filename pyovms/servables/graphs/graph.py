"""A graph servable: a loaded `graph.pbtxt`, answering unary ModelInfer and ModelStreamInfer (spec §6.3).

Unary: a fresh graph run per request. Request parameters become input side packets (`py` is reserved,
`OVMS_MP_TIMESTAMP` sets the packets' timestamp), each input becomes one packet, the inputs are closed, and the
first packet of every graph output is returned together (a generative graph called unary answers its first yield).

Streaming: the first request picks the graph and its side packets; one run serves the whole stream. Every output
packet goes back as its own response as soon as it exists. A request that cannot be used (wrong name or version,
an input that does not deserialize) is answered in-stream and the stream goes on; a graph error (a node failing,
a timestamp that does not increase) ends the stream with its status. The client's half-close drains the graph;
a cancelled call stops it. A stream costs tasks, not threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ServingError, Status
from ...observability.statistics import InferStatistics
from ...scheduling.user_code import describe
from ...tensors.messages import InferOutput, InferRequest, InferResponse, TensorSpec
from ...tensors.validation import check_buffers, check_requested_outputs
from . import packets
from .calculators import CALCULATORS, Calculator, LoadContext
from .graph_config import GraphConfig, NodeConfig, read_graph_config
from .runtime import TIMESTAMP_MAX, TIMESTAMP_MIN, GraphRun, Packet

if TYPE_CHECKING:
    from ...repository.registry import Repository

log = logging.getLogger("pyovms.graphs")

PLATFORM = "OpenVINO"
TIMESTAMP_PARAMETER = "OVMS_MP_TIMESTAMP"
RESERVED_SIDE_PACKET = "py"
GRAPH_VERSION = "1"


@dataclass(slots=True)
class GraphCounters:
    """Counts behind OVMS's graph metrics, updated on the event loop."""

    runs: int = 0
    """Graph runs alive (a unary request's or a stream's)."""
    errors: int = 0
    """Runs that ended with a graph error."""
    stream_accepted: int = 0
    """Stream requests whose inputs went into the graph."""
    stream_rejected: int = 0
    """Stream requests answered in-stream with an error instead."""
    stream_responses: int = 0


@dataclass(frozen=True, slots=True)
class PreparedNode:
    config: NodeConfig
    calculator: type[Calculator]
    shared: Any


class Graph:
    """A loaded graph definition; one `GraphRun` per unary request or stream."""

    version = 1
    platform = PLATFORM

    def __init__(self, name: str, config: GraphConfig, nodes: list[PreparedNode]) -> None:
        self.name = name
        self.config = config
        self.nodes = nodes
        self.input_kinds = {ref.name: packets.kind_of(ref.tag) for ref in config.input_streams}
        self.output_kinds = {ref.name: packets.kind_of(ref.tag) for ref in config.output_streams}
        self.inputs: Mapping[str, TensorSpec] = {n: _any_tensor(n) for n in sorted(self.input_kinds)}
        self.outputs: Mapping[str, TensorSpec] = {n: _any_tensor(n) for n in sorted(self.output_kinds)}
        self.statistics = InferStatistics()
        self.counters = GraphCounters()
        """What the graph metrics report (`ovms_current_graphs`, stream requests and responses, graph errors)."""
        self.pooled = config.queue_size not in (None, "0") and os.environ.get("OVMS_GRAPH_QUEUE_OFF") != "1"
        """`# OVMS_GRAPH_QUEUE_MAX_SIZE` asks for a pool of graphs: runs are cheap here, so only its rule (no side
        packets from requests) applies."""
        self.produced_side_packets = {ref.name for node in config.nodes for ref in node.output_side_packets}
        self.whole_request = packets.REQUEST in self.input_kinds.values()

    @classmethod
    async def load(cls, name: str, graph_path: Path, repository: Repository) -> Graph:
        """Read, check and prepare a graph (Python handlers are imported and initialized); raise ServingError."""
        config = read_graph_config(graph_path)
        _check_streams(config)
        context = LoadContext(graph_path.parent, repository)
        prepared: list[PreparedNode] = []
        try:
            for node in config.nodes:
                calculator = CALCULATORS.get(node.calculator)
                if calculator is None:
                    raise ServingError(
                        Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR,
                        f"node {node.name or '(unnamed)'}: unknown calculator {node.calculator}; served calculators: "
                        f"{', '.join(sorted(CALCULATORS))}",
                    )
                prepared.append(PreparedNode(node, calculator, await calculator.prepare(node, context)))
        except BaseException:
            for done in prepared:
                done.calculator.unload(done.shared)
            raise
        return cls(name, config, prepared)

    def unload(self) -> None:
        """Release the nodes' shared resources (Python handlers' `finalize`)."""
        for node in self.nodes:
            node.calculator.unload(node.shared)

    # ------------------------------------------------------------------------------------------------ runs

    def _side_packets(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        side = {key: value for key, value in parameters.items() if key != TIMESTAMP_PARAMETER}
        if RESERVED_SIDE_PACKET in side:
            raise ServingError(
                Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR,
                f"Incoming input side packet: {RESERVED_SIDE_PACKET} is special reserved name and cannot be used",
            )
        if side and self.pooled:
            raise ServingError(
                Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR,
                f"this graph uses a graph queue (OVMS_GRAPH_QUEUE_MAX_SIZE): request parameters other than "
                f"{TIMESTAMP_PARAMETER} are not accepted; got {', '.join(sorted(side))}",
            )
        taken = sorted(self.produced_side_packets & set(side))
        if taken:
            raise ServingError(
                Status.MEDIAPIPE_GRAPH_START_ERROR, f"side packet {taken[0]} is made by a node; a request cannot set it"
            )
        missing = [ref.name for ref in self.config.input_side_packets if ref.name not in side]
        if missing:
            raise ServingError(Status.MEDIAPIPE_GRAPH_START_ERROR, f"missing input side packet: {missing[0]}")
        return side

    def _start(self, side_packets: dict[str, Any]) -> GraphRun:
        run = GraphRun(
            ((node.config, node.calculator(node.config, node.shared)) for node in self.nodes),
            self.config.input_streams,
            self.config.output_streams,
            side_packets,
        )
        for node in run.nodes:
            node.calculator.start(node)
        run.start()
        self.counters.runs += 1
        return run

    async def _end(self, run: GraphRun) -> None:
        """Stop what is left of a run and count it out."""
        await run.cancel()
        self.counters.runs -= 1
        if run.error is not None:
            self.counters.errors += 1
        run.release()

    def _check_inputs(self, request: InferRequest, unary: bool) -> None:
        if self.whole_request:
            return
        check_buffers(request)
        seen: set[str] = set()
        for tensor in request.inputs:
            if tensor.name not in self.input_kinds:
                raise ServingError(Status.INVALID_UNEXPECTED_INPUT, f"{tensor.name} is unexpected")
            if tensor.name in seen:
                raise ServingError(Status.INVALID_NO_OF_INPUTS, f"input {tensor.name} is sent more than once")
            seen.add(tensor.name)
        if unary and len(seen) != len(self.input_kinds):
            missing = sorted(set(self.input_kinds) - seen)
            raise ServingError(
                Status.INVALID_NO_OF_INPUTS, f"Not all input packets created; missing: {', '.join(missing)}"
            )

    def _payloads(self, request: InferRequest) -> list[tuple[str, Any]]:
        if self.whole_request:
            return [(name, request) for name in self.input_kinds]
        return [(tensor.name, packets.to_packet(self.input_kinds[tensor.name], tensor)) for tensor in request.inputs]

    def _response(self, packets_by_output: Mapping[str, Packet], request_id: str = "") -> InferResponse:
        outputs: list[InferOutput] = []
        for name, packet in packets_by_output.items():
            outputs.extend(packets.to_outputs(name, packet.payload))
        outputs.sort(key=lambda output: output.name)  # by the names on the wire (a Tensor keeps its own)
        timestamp = max(packet.timestamp for packet in packets_by_output.values())
        return InferResponse(self.name, GRAPH_VERSION, request_id, outputs, {TIMESTAMP_PARAMETER: timestamp})

    # ------------------------------------------------------------------------------------------------ unary

    async def infer_request(self, request: InferRequest) -> InferResponse:
        """One unary call: a run of its own, answered with the first packet of every output."""
        check_requested_outputs(self.outputs, request.outputs)
        self._check_inputs(request, unary=True)
        timestamp = request_timestamp(request.parameters, None)
        payloads = self._payloads(request)
        run = self._start(self._side_packets(request.parameters))
        first: dict[str, Packet] = {}
        try:
            for name, payload in payloads:
                run.add(name, payload, timestamp)
            run.close_inputs()
            while len(first) < len(self.output_kinds):
                item = await run.next_output()
                if item is None:
                    break
                first.setdefault(item[0], item[1])
        finally:
            await self._end(run)
        if len(first) < len(self.output_kinds):
            missing = sorted(set(self.output_kinds) - set(first))
            raise ServingError(
                Status.MEDIAPIPE_EXECUTION_ERROR,
                f"Unknown error during mediapipe execution; no packet on output {', '.join(missing)}",
            )
        if request.outputs:
            first = {name: packet for name, packet in first.items() if name in request.outputs}
        return self._response(first, request.id)

    # ------------------------------------------------------------------------------------------------ streaming

    async def stream(
        self, first: InferRequest, requests: AsyncIterator[InferRequest | ServingError]
    ) -> AsyncIterator[InferResponse | ServingError]:
        """Serve one ModelStreamInfer call: yield responses and in-stream errors; raise a graph error."""
        run = self._start(self._side_packets(first.parameters))
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        reader = asyncio.create_task(self._read(first, requests, run, events), name=f"graph {self.name} reader")
        pump = asyncio.create_task(self._pump(run, events), name=f"graph {self.name} outputs")
        counters = self.counters
        try:
            while True:
                kind, value = await events.get()
                if kind == "output":
                    name, packet = value
                    counters.stream_responses += 1
                    yield self._response({name: packet})
                elif kind == "error":
                    counters.stream_rejected += 1
                    yield value
                elif kind == "fatal":
                    raise value
                else:
                    return
        finally:
            reader.cancel()
            pump.cancel()
            await asyncio.gather(reader, pump, return_exceptions=True)
            await self._end(run)

    async def _pump(self, run: GraphRun, events: asyncio.Queue[tuple[str, Any]]) -> None:
        try:
            while (item := await run.next_output()) is not None:
                events.put_nowait(("output", item))
        except ServingError as exc:
            events.put_nowait(("fatal", exc))
            return
        events.put_nowait(("end", None))

    async def _read(
        self,
        first: InferRequest,
        requests: AsyncIterator[InferRequest | ServingError],
        run: GraphRun,
        events: asyncio.Queue[tuple[str, Any]],
    ) -> None:
        last: int | None = None
        try:
            last = self._feed(first, run, last, events, "partial deserialization of first request")
            async for request in requests:
                if isinstance(request, ServingError):  # a message that did not parse
                    events.put_nowait(("error", request))
                    continue
                if request.model_name != self.name:
                    events.put_nowait(("error", _in_stream(Status.MEDIAPIPE_INCORRECT_SERVABLE_NAME, request)))
                    continue
                if request.model_version not in ("", "0", GRAPH_VERSION):
                    events.put_nowait(("error", _in_stream(Status.MEDIAPIPE_INCORRECT_SERVABLE_VERSION, request)))
                    continue
                last = self._feed(request, run, last, events, "partial deserialization of subsequent requests")
        except ServingError as exc:  # a graph error: the stream ends with it
            events.put_nowait(("fatal", exc))
            return
        except Exception as exc:
            log.error("graph %s: reading the stream failed", self.name, exc_info=exc)
            events.put_nowait(("fatal", ServingError(Status.INTERNAL_ERROR, describe(exc, typed=True))))
            return
        run.close_inputs()

    def _feed(
        self,
        request: InferRequest,
        run: GraphRun,
        last: int | None,
        events: asyncio.Queue[tuple[str, Any]],
        context: str,
    ) -> int | None:
        """Send one request's inputs into the run; return the timestamp used (the last one when refused)."""
        try:
            self._check_inputs(request, unary=False)
            timestamp = request_timestamp(request.parameters, last)
            payloads = self._payloads(request)
        except ServingError as exc:
            details = f"{exc.details}; {context}" if exc.details else context
            events.put_nowait(("error", ServingError(exc.status, details)))
            return last
        for name, payload in payloads:
            run.add(name, payload, timestamp)  # a timestamp that does not increase fails the graph
        self.counters.stream_accepted += 1
        return timestamp


def _in_stream(status: Status, request: InferRequest) -> ServingError:
    return ServingError(
        status, f"name: {request.model_name}; version: {request.model_version}; validate subsequent requests"
    )


def request_timestamp(parameters: Mapping[str, Any], last: int | None) -> int:
    """`OVMS_MP_TIMESTAMP` when given (int64 in MediaPipe's range), else the wall clock in microseconds (one more
    than the stream's last timestamp when the clock has not moved)."""
    if TIMESTAMP_PARAMETER not in parameters:
        now = time.time_ns() // 1000
        return now if last is None or now > last else last + 1
    value = parameters[TIMESTAMP_PARAMETER]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ServingError(
            Status.MEDIAPIPE_INVALID_TIMESTAMP,
            f"Invalid timestamp format in request parameter {TIMESTAMP_PARAMETER}. Should be int64",
        )
    if not TIMESTAMP_MIN <= value <= TIMESTAMP_MAX:
        raise ServingError(Status.MEDIAPIPE_INVALID_TIMESTAMP, str(value))
    return value


def _any_tensor(name: str) -> TensorSpec:
    """Graph metadata: names only (datatype INVALID, no shape), as OVMS reports them."""
    return TensorSpec(name, "INVALID", "INVALID", ())


def _check_streams(config: GraphConfig) -> None:
    """Every stream a node or the graph reads must be produced; tags pyovms cannot carry are refused."""
    produced = {ref.name for ref in config.input_streams}
    for node in config.nodes:
        produced.update(ref.name for ref in node.output_streams)
    for node in config.nodes:
        for ref in node.input_streams:
            if ref.name not in produced:
                raise ServingError(
                    Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR,
                    f"node {node.name or node.calculator} reads stream {ref.name}, which nothing produces",
                )
    for ref in config.output_streams:
        if ref.name not in produced:
            raise ServingError(
                Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR, f"graph output stream {ref.name} is produced by no node"
            )
    for ref in (*config.input_streams, *config.output_streams):
        if packets.kind_of(ref.tag) in packets.UNSERVED:
            raise ServingError(
                Status.NOT_IMPLEMENTED, f"stream {ref.tag}:{ref.name}: {ref.tag} packets are not served by pyovms"
            )
    kinds_in = {packets.kind_of(ref.tag) for ref in config.input_streams}
    kinds_out = {packets.kind_of(ref.tag) for ref in config.output_streams}
    if (packets.REQUEST in kinds_in) != (packets.RESPONSE in kinds_out) or (
        packets.REQUEST in kinds_in and (len(config.input_streams) != 1 or len(config.output_streams) != 1)
    ):
        raise ServingError(
            Status.MEDIAPIPE_GRAPH_INITIALIZATION_ERROR,
            "REQUEST and RESPONSE streams go together, as the graph's only input and output",
        )
