"""graph.pbtxt (MediaPipe's `CalculatorGraphConfig` in protobuf text format) read into plain dataclasses.

The file is parsed by protobuf's own text-format parser against proto/mediapipe_graph.proto, so any graph OVMS
accepts parses the same way here (Any expansion `[type.googleapis.com/mediapipe.X]`, proto2 extensions
`[mediapipe.X.ext]`, single quotes, commas). The messages live in a private descriptor pool, so a `mediapipe`
package installed beside pyovms does not clash. The runtime only sees the dataclasses below; the one protobuf
object it gets is each node's options message, whose fields are read by name.

Stream references follow MediaPipe: `"TAG:INDEX:name"`, `"TAG:name"` (index 0) or `"name"` (no tag; the untagged
entries of one list are numbered 0, 1, ... in order). Checks done here are those that need only the text: names,
duplicate TAG:INDEX within a list, streams and side packets with two producers, back edges and sync sets naming
the node's inputs, and the `# OVMS_GRAPH_QUEUE_MAX_SIZE:` directive. Whether calculators exist and streams are
connected is checked when the graph is prepared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from ...errors import ServingError, Status
from ...generated import mediapipe_graph_pb2 as pb

POOL = pb.POOL
"""The private descriptor pool holding the graph schema and the calculator options messages."""

DEFAULT_INPUT_STREAM_HANDLER = "DefaultInputStreamHandler"
SYNC_SET_INPUT_STREAM_HANDLER = "SyncSetInputStreamHandler"
IMMEDIATE_INPUT_STREAM_HANDLER = "ImmediateInputStreamHandler"

_TAG = r"[A-Z_][A-Z0-9_]*"
_INDEX = r"0|[1-9][0-9]*"
_NAME = r"[a-z_][a-zA-Z0-9_]*"
_TAG_INDEX_NAME = re.compile(rf"(?:(?P<tag>{_TAG}):(?:(?P<index>{_INDEX}):)?)?(?P<name>{_NAME})")
_TAG_INDEX = re.compile(rf"(?P<tag>{_TAG})?(?::(?P<index>{_INDEX}))?")
_QUEUE_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*OVMS_GRAPH_QUEUE_MAX_SIZE[ \t]*:[ \t]*(\S+)[ \t]*\r?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class StreamRef:
    """One entry of an input_stream/output_stream/side packet list: `TAG:INDEX:name`."""

    tag: str
    index: int
    name: str

    @property
    def tag_index(self) -> str:
        """`"TAG:0"` (`":1"` untagged): how a calculator addresses this stream, and how back edges name it."""
        return f"{self.tag}:{self.index}"

    @classmethod
    def parse(cls, text: str) -> StreamRef:
        """Parse one reference (an untagged one gets index 0); ValueError when it is not valid MediaPipe."""
        match = _TAG_INDEX_NAME.fullmatch(text)
        if match is None:
            raise ValueError(
                f'"{text}" is not a valid stream reference: expected "TAG:name", "TAG:INDEX:name" or "name" '
                f"with TAG matching {_TAG} and name matching {_NAME}"
            )
        return cls(match["tag"] or "", int(match["index"] or 0), match["name"])


@dataclass(frozen=True)
class NodeConfig:
    """One `node { ... }` of the graph."""

    name: str
    calculator: str
    input_streams: tuple[StreamRef, ...]
    output_streams: tuple[StreamRef, ...]
    input_side_packets: tuple[StreamRef, ...]
    output_side_packets: tuple[StreamRef, ...]
    options: Message | None
    """The calculator's options message (e.g. `mediapipe.PythonExecutorCalculatorOptions`), None when not set.

    Taken from `options { [mediapipe.X.ext] {...} }` when set there (MediaPipe gives that form precedence), else
    from the first `node_options { [type.googleapis.com/mediapipe.X] {...} }`. Check
    `options.DESCRIPTOR.name` before reading fields: the node may carry another calculator's options."""
    back_edges: frozenset[str]
    """tag_index (`"LOOPBACK:0"`) of the inputs marked `back_edge: true` in input_stream_info."""
    input_stream_handler: str
    """The node's input stream handler, else the graph's, else `DefaultInputStreamHandler`."""
    sync_sets: tuple[tuple[str, ...], ...]
    """tag_index lists from SyncSetInputStreamHandlerOptions (inputs in no set form one more set at run time)."""


@dataclass(frozen=True)
class GraphConfig:
    """A parsed and checked graph.pbtxt."""

    input_streams: tuple[StreamRef, ...]
    output_streams: tuple[StreamRef, ...]
    input_side_packets: tuple[StreamRef, ...]
    output_side_packets: tuple[StreamRef, ...]
    nodes: tuple[NodeConfig, ...]
    queue_size: str | None
    """From a `# OVMS_GRAPH_QUEUE_MAX_SIZE: AUTO|<n>|0` comment line: "AUTO" or a decimal count; None if absent."""


def read_graph_config(path: Path) -> GraphConfig:
    """Read and parse a graph.pbtxt; a missing or unreadable file is FILE_INVALID, as in OVMS."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(str(path), f"not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ServingError(Status.FILE_INVALID, f"{path}: {exc.strerror or exc}") from exc
    return parse_graph_config(text, str(path))


def parse_graph_config(text: str, source: str = "graph.pbtxt") -> GraphConfig:
    """Parse graph.pbtxt text; every problem is MEDIAPIPE_GRAPH_CONFIG_FILE_INVALID naming `source`."""
    if not text.strip():
        raise _invalid(source, "the graph definition is empty")
    proto = pb.CalculatorGraphConfig()
    try:
        text_format.Parse(text, proto, descriptor_pool=POOL)
    except text_format.ParseError as exc:
        raise _invalid(source, str(exc)) from exc
    graph_handler = proto.input_stream_handler if proto.HasField("input_stream_handler") else None
    nodes = tuple(_node(node, position, graph_handler, source) for position, node in enumerate(proto.node))
    config = GraphConfig(
        input_streams=_refs(proto.input_stream, "graph input_stream", source),
        output_streams=_refs(proto.output_stream, "graph output_stream", source),
        input_side_packets=_refs(proto.input_side_packet, "graph input_side_packet", source),
        output_side_packets=_refs(proto.output_side_packet, "graph output_side_packet", source),
        nodes=nodes,
        queue_size=_queue_size(text, source),
    )
    _check_producers(config, source)
    return config


def _invalid(source: str, text: str) -> ServingError:
    return ServingError(Status.MEDIAPIPE_GRAPH_CONFIG_FILE_INVALID, f"{source}: {text}")


def _refs(values: Iterable[str], where: str, source: str) -> tuple[StreamRef, ...]:
    """Parse one list; untagged entries are numbered in order, and a TAG:INDEX may appear once (as in MediaPipe)."""
    refs: list[StreamRef] = []
    seen: dict[str, str] = {}
    untagged = 0
    for value in values:
        try:
            ref = StreamRef.parse(value)
        except ValueError as exc:
            raise _invalid(source, f"{where}: {exc}") from None
        if not ref.tag:
            ref = StreamRef("", untagged, ref.name)
            untagged += 1
        if ref.tag_index in seen:
            raise _invalid(source, f'{where}: "{seen[ref.tag_index]}" and "{value}" both use {ref.tag_index}')
        seen[ref.tag_index] = value
        refs.append(ref)
    return tuple(refs)


def _tag_index(text: str, where: str, source: str) -> str:
    """Normalise an input_stream_info/sync_set `tag_index` (`"TAG"`, `"TAG:1"`, `":1"`) to `"TAG:INDEX"`."""
    match = _TAG_INDEX.fullmatch(text)
    if match is None:
        raise _invalid(source, f'{where}: tag_index "{text}" does not match "TAG", "TAG:INDEX" or ":INDEX"')
    return f"{match['tag'] or ''}:{int(match['index'] or 0)}"


def _node(
    node: pb.CalculatorGraphConfig.Node,
    position: int,
    graph_handler: pb.InputStreamHandlerConfig | None,
    source: str,
) -> NodeConfig:
    label = f"node {node.name or node.calculator or f'#{position}'}"
    inputs = _refs(node.input_stream, f"{label}: input_stream", source)
    known = {ref.tag_index for ref in inputs}
    back_edges = set()
    for info in node.input_stream_info:
        tag_index = _tag_index(info.tag_index, f"{label}: input_stream_info", source)
        if tag_index not in known:
            raise _invalid(source, f"{label}: input_stream_info {info.tag_index} names no input stream of the node")
        if info.back_edge:
            back_edges.add(tag_index)
    handler = node.input_stream_handler if node.HasField("input_stream_handler") else graph_handler
    sync_sets: list[tuple[str, ...]] = []
    if handler is not None and handler.options.HasExtension(pb.SyncSetInputStreamHandlerOptions.ext):
        for sync_set in handler.options.Extensions[pb.SyncSetInputStreamHandlerOptions.ext].sync_set:
            tags = tuple(_tag_index(t, f"{label}: sync_set", source) for t in sync_set.tag_index)
            unknown = [t for t in tags if t not in known]
            if unknown:
                raise _invalid(source, f"{label}: sync_set names {unknown[0]}, which is no input stream of the node")
            sync_sets.append(tags)
    return NodeConfig(
        name=node.name,
        calculator=node.calculator,
        input_streams=inputs,
        output_streams=_refs(node.output_stream, f"{label}: output_stream", source),
        input_side_packets=_refs(
            [*node.input_side_packet, *node.external_input], f"{label}: input_side_packet", source
        ),
        output_side_packets=_refs(node.output_side_packet, f"{label}: output_side_packet", source),
        options=_options(node, label, source),
        back_edges=frozenset(back_edges),
        input_stream_handler=handler.input_stream_handler if handler is not None else DEFAULT_INPUT_STREAM_HANDLER,
        sync_sets=tuple(sync_sets),
    )


def _options(node: pb.CalculatorGraphConfig.Node, label: str, source: str) -> Message | None:
    """The options message set by `options { [X.ext] }` or, failing that, by the first `node_options` Any."""
    if node.HasField("options"):
        for field, value in node.options.ListFields():
            if field.is_extension:
                return value
    for packed in node.node_options:
        try:
            descriptor = POOL.FindMessageTypeByName(packed.TypeName())
        except KeyError:
            raise _invalid(source, f"{label}: unknown node_options type {packed.type_url}") from None
        message = GetMessageClass(descriptor)()
        try:
            packed.Unpack(message)
        except DecodeError as exc:
            raise _invalid(source, f"{label}: node_options of type {packed.type_url}: {exc}") from None
        return message
    return None


def _check_producers(config: GraphConfig, source: str) -> None:
    """Every stream and side packet has one producer (a graph input or one node output); graph outputs differ."""
    for kind, graph_inputs, node_outputs in (
        ("stream", config.input_streams, lambda node: node.output_streams),
        ("side packet", config.input_side_packets, lambda node: node.output_side_packets),
    ):
        producers: dict[str, str] = {}
        for ref in graph_inputs:
            if ref.name in producers:
                raise _invalid(source, f"{kind} {ref.name} is given twice as a graph input")
            producers[ref.name] = "a graph input"
        for node in config.nodes:
            label = f"node {node.name or node.calculator}"
            for ref in node_outputs(node):
                if ref.name in producers:
                    raise _invalid(source, f"{kind} {ref.name} has two producers: {producers[ref.name]} and {label}")
                producers[ref.name] = label
    outputs: set[str] = set()
    for ref in config.output_streams:
        if ref.name in outputs:
            raise _invalid(source, f"stream {ref.name} is given twice as a graph output")
        outputs.add(ref.name)


def _queue_size(text: str, source: str) -> str | None:
    """The `# OVMS_GRAPH_QUEUE_MAX_SIZE: AUTO|<n>` directive: "AUTO", a count ("0" = no pool), or None."""
    match = _QUEUE_DIRECTIVE.search(text)
    if match is None:
        return None
    value = match[1]
    if value == "AUTO":
        return value
    if re.fullmatch(r"[+-]?[0-9]+", value) is None or int(value) < 0:
        raise _invalid(source, f"OVMS_GRAPH_QUEUE_MAX_SIZE {value!r}: expected AUTO, 0 or a positive integer")
    return str(int(value))
