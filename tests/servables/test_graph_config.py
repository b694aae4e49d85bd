"""graph.pbtxt parsing: real OVMS-style graphs read into plain dataclasses, and the errors OVMS gives for bad ones."""

import pytest
from google.protobuf import descriptor_pool

from pyovms.errors import ServingError, Status
from pyovms.servables.graphs.graph_config import GraphConfig, StreamRef, parse_graph_config, read_graph_config

PYTHON_QUICKSTART = """
input_stream: "OVMS_PY_TENSOR:text"
output_stream: "OVMS_PY_TENSOR:result"

node {
  name: "python_model"
  calculator: "PythonExecutorCalculator"
  input_side_packet: "PYTHON_NODE_RESOURCES:py"
  input_stream: "INPUT:text"
  output_stream: "OUTPUT:result"
  node_options: {
    [type.googleapis.com / mediapipe.PythonExecutorCalculatorOptions]: {
      handler_path: "/ws/model.py"
    }
  }
}
"""

PYTHON_GENERATIVE = """
input_stream: "OVMS_PY_TENSOR:input"
output_stream: "OVMS_PY_TENSOR:output"

node {
  name: "pythonNode"
  calculator: "PythonExecutorCalculator"
  input_side_packet: "PYTHON_NODE_RESOURCES:py"
  input_stream: "LOOPBACK:loopback"
  input_stream: "INPUT:input"
  output_stream: "LOOPBACK:loopback"
  output_stream: "OUTPUT:output"
  node_options: {
    [type.googleapis.com / mediapipe.PythonExecutorCalculatorOptions]: {
      handler_path: "/ws/generative.py"
    }
  }
  input_stream_handler {
    input_stream_handler: "SyncSetInputStreamHandler",
    options {
      [mediapipe.SyncSetInputStreamHandlerOptions.ext] {
        sync_set {
          tag_index: "LOOPBACK:0"
        }
      }
    }
  }
  input_stream_info: {
    tag_index: 'LOOPBACK:0',
    back_edge: true
  }
}
"""

SESSION_AND_INFERENCE = """
input_stream: "OVTENSOR:in"
output_stream: "OVTENSOR:out"
node {
  calculator: "OpenVINOModelServerSessionCalculator"
  output_side_packet: "SESSION:session"
  node_options: {
    [type.googleapis.com / mediapipe.OpenVINOModelServerSessionCalculatorOptions]: {
      servable_name: "dummy"
      servable_version: "1"
    }
  }
}
node {
  calculator: "OpenVINOInferenceCalculator"
  input_side_packet: "SESSION:session"
  input_stream: "OVTENSOR:in"
  output_stream: "OVTENSOR:out"
  node_options: {
    [type.googleapis.com / mediapipe.OpenVINOInferenceCalculatorOptions]: {
      tag_to_input_tensor_names {
        key: "OVTENSOR"
        value: "b"
      }
      tag_to_output_tensor_names {
        key: "OVTENSOR"
        value: "a"
      }
    }
  }
}
"""

SESSION_AND_INFERENCE_OLD_OPTIONS = """
input_stream: "OVTENSOR:in"
output_stream: "OVTENSOR:out"
node {
  calculator: "OpenVINOModelServerSessionCalculator"
  output_side_packet: "SESSION:session"
  options: {
    [mediapipe.OpenVINOModelServerSessionCalculatorOptions.ext] {
      servable_name: "dummy"
      servable_version: "1"
    }
  }
}
node {
  calculator: "OpenVINOInferenceCalculator"
  input_side_packet: "SESSION:session"
  input_stream: "OVTENSOR:in"
  output_stream: "OVTENSOR:out"
  options: {
    [mediapipe.OpenVINOInferenceCalculatorOptions.ext] {
      tag_to_input_tensor_names { key: "OVTENSOR" value: "b" }
      tag_to_output_tensor_names { key: "OVTENSOR" value: "a" }
      input_order_list: ["b"]
    }
  }
}
"""


def invalid(text: str) -> ServingError:
    with pytest.raises(ServingError) as caught:
        parse_graph_config(text, "g/graph.pbtxt")
    assert caught.value.status is Status.MEDIAPIPE_GRAPH_CONFIG_FILE_INVALID, caught.value
    assert caught.value.details.startswith("g/graph.pbtxt: "), caught.value.details
    return caught.value


def test_python_quickstart_graph():
    graph = parse_graph_config(PYTHON_QUICKSTART)
    assert isinstance(graph, GraphConfig)
    assert graph.input_streams == (StreamRef("OVMS_PY_TENSOR", 0, "text"),)
    assert graph.output_streams == (StreamRef("OVMS_PY_TENSOR", 0, "result"),)
    assert graph.input_side_packets == graph.output_side_packets == ()
    assert graph.queue_size is None
    (node,) = graph.nodes
    assert (node.name, node.calculator) == ("python_model", "PythonExecutorCalculator")
    assert node.input_side_packets == (StreamRef("PYTHON_NODE_RESOURCES", 0, "py"),)
    assert [ref.tag_index for ref in node.input_streams] == ["INPUT:0"]
    assert [ref.tag_index for ref in node.output_streams] == ["OUTPUT:0"]
    assert node.options.DESCRIPTOR.full_name == "mediapipe.PythonExecutorCalculatorOptions"
    assert node.options.handler_path == "/ws/model.py"
    assert node.back_edges == frozenset()
    assert node.input_stream_handler == "DefaultInputStreamHandler"
    assert node.sync_sets == ()


def test_generative_loopback_node():
    (node,) = parse_graph_config(PYTHON_GENERATIVE).nodes
    assert [ref.tag_index for ref in node.input_streams] == ["LOOPBACK:0", "INPUT:0"]
    assert node.input_streams[0].name == node.output_streams[0].name == "loopback"
    assert node.back_edges == frozenset({"LOOPBACK:0"})
    assert node.input_stream_handler == "SyncSetInputStreamHandler"
    assert node.sync_sets == (("LOOPBACK:0",),)
    assert node.options.handler_path == "/ws/generative.py"


@pytest.mark.parametrize(
    "text", [SESSION_AND_INFERENCE, SESSION_AND_INFERENCE_OLD_OPTIONS], ids=["node_options", "options"]
)
def test_session_and_inference_calculators(text):
    session, inference = parse_graph_config(text).nodes
    assert session.output_side_packets == (StreamRef("SESSION", 0, "session"),)
    assert session.options.DESCRIPTOR.name == "OpenVINOModelServerSessionCalculatorOptions"
    assert (session.options.servable_name, session.options.servable_version) == ("dummy", "1")
    assert inference.input_side_packets == (StreamRef("SESSION", 0, "session"),)
    assert inference.options.DESCRIPTOR.name == "OpenVINOInferenceCalculatorOptions"
    assert dict(inference.options.tag_to_input_tensor_names) == {"OVTENSOR": "b"}
    assert dict(inference.options.tag_to_output_tensor_names) == {"OVTENSOR": "a"}


@pytest.mark.parametrize(
    ("options", "check"),
    [
        (
            "[type.googleapis.com/mediapipe.PyTensorOvTensorConverterCalculatorOptions] "
            '{ tag_to_output_tensor_names { key: "OVMS_PY_TENSOR" value: "x" } }',
            lambda o: dict(o.tag_to_output_tensor_names) == {"OVMS_PY_TENSOR": "x"},
        ),
        (
            '[type.googleapis.com / mediapipe.OVMSCalculatorOptions]: { servable_name: "m" servable_version: "2" '
            'tag_to_input_tensor_names { key: "B" value: "b" } config_path: "/c.json" }',
            lambda o: (o.servable_name, o.servable_version, o.config_path) == ("m", "2", "/c.json"),
        ),
    ],
)
def test_other_calculator_options(options, check):
    (node,) = parse_graph_config(f'node {{ calculator: "X" node_options: {{ {options} }} }}').nodes
    assert check(node.options)


def test_tag_index_name_references():
    graph = parse_graph_config("""
        input_stream: "a"
        input_stream: "b"
        output_stream: "TENSORS:1:y"
        output_stream: "TENSORS:0:x"
        node {
          calculator: "PassThroughCalculator"
          input_stream: "a"
          input_stream: "b"
          output_stream: "TENSORS:0:x"
          output_stream: "TENSORS:1:y"
        }
    """)
    assert graph.input_streams == (StreamRef("", 0, "a"), StreamRef("", 1, "b"))
    assert [ref.tag_index for ref in graph.nodes[0].input_streams] == [":0", ":1"]
    assert graph.output_streams == (StreamRef("TENSORS", 1, "y"), StreamRef("TENSORS", 0, "x"))
    assert [ref.tag_index for ref in graph.nodes[0].output_streams] == ["TENSORS:0", "TENSORS:1"]
    assert StreamRef.parse("VIDEO:12:frame_2") == StreamRef("VIDEO", 12, "frame_2")
    assert StreamRef.parse("IMAGE:camelName") == StreamRef("IMAGE", 0, "camelName")
    assert StreamRef.parse("_x").tag_index == ":0"
    for bad in ("Name", "TAG:01:x", "tag:x", "TAG:x:y", "A:B:C:d", "", "TAG:"):
        with pytest.raises(ValueError):
            StreamRef.parse(bad)


def test_unknown_field():
    error = invalid('node { calculatr: "PythonExecutorCalculator" }')
    assert 'has no field named "calculatr"' in error.details
    assert "Failed to read protobuf graph configuration file - g/graph.pbtxt: " in str(error)


def test_syntax_error():
    assert "1:" in invalid('input_stream: "a" node {').details


@pytest.mark.parametrize(
    "options",
    [
        "node_options: { [type.googleapis.com/mediapipe.NoSuchCalculatorOptions]: { x: 1 } }",
        "options: { [mediapipe.NoSuchCalculatorOptions.ext] { x: 1 } }",
        'node_options { type_url: "type.googleapis.com/mediapipe.NoSuchCalculatorOptions" value: "" }',
    ],
    ids=["any", "extension", "packed"],
)
def test_unknown_options_type(options):
    assert "mediapipe.NoSuchCalculatorOptions" in invalid(f'node {{ calculator: "X" {options} }}').details


def test_unknown_options_field():
    error = invalid(
        'node { node_options: { [type.googleapis.com/mediapipe.PythonExecutorCalculatorOptions]: { path: "x" } } }'
    )
    assert 'no field named "path"' in error.details


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('input_stream: "OVMS_PY_TENSOR:my-text"', "OVMS_PY_TENSOR:my-text"),
        ('node { calculator: "X" input_stream: "in" output_stream: "Out" }', '"Out"'),
        ('node { calculator: "X" input_side_packet: "py:PYTHON_NODE_RESOURCES" }', "py:PYTHON_NODE_RESOURCES"),
    ],
)
def test_bad_stream_name(text, named):
    assert named in invalid(text).details


def test_duplicate_graph_input_tag():
    error = invalid('input_stream: "OVMS_PY_TENSOR:first"\ninput_stream: "OVMS_PY_TENSOR:second"')
    assert "graph input_stream" in error.details and "OVMS_PY_TENSOR:0" in error.details
    assert '"OVMS_PY_TENSOR:first"' in error.details and '"OVMS_PY_TENSOR:second"' in error.details


def test_duplicate_graph_output_tag():
    assert "graph output_stream" in invalid('output_stream: "OUT:0:a"\noutput_stream: "OUT:0:b"').details


def test_stream_with_two_producers():
    error = invalid("""
        input_stream: "in"
        node { name: "first" calculator: "X" input_stream: "in" output_stream: "out" }
        node { name: "second" calculator: "X" input_stream: "in" output_stream: "out" }
    """)
    assert "stream out has two producers: node first and node second" in error.details
    assert "stream in has two producers" in invalid('input_stream: "in"\nnode { output_stream: "in" }').details


def test_back_edge_must_name_an_input():
    error = invalid(
        'node { calculator: "X" input_stream: "A:a" input_stream_info { tag_index: "LOOP:0" back_edge: true } }'
    )
    assert "LOOP:0" in error.details


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("# OVMS_GRAPH_QUEUE_MAX_SIZE: AUTO", "AUTO"),
        ("#OVMS_GRAPH_QUEUE_MAX_SIZE:4", "4"),
        ("   # OVMS_GRAPH_QUEUE_MAX_SIZE: 0  ", "0"),
        ("# OVMS_GRAPH_QUEUE_MAX_SIZE AUTO", None),
        ("# queue size not set", None),
    ],
)
def test_queue_size_comment(comment, expected):
    text = PYTHON_QUICKSTART.replace(
        'output_stream: "OVMS_PY_TENSOR:result"\n', f'output_stream: "OVMS_PY_TENSOR:result"\n{comment}\n'
    )
    assert comment in text
    assert parse_graph_config(text).queue_size == expected


@pytest.mark.parametrize("value", ["-1", "many", "auto"])
def test_invalid_queue_size(value):
    assert value in invalid(f"# OVMS_GRAPH_QUEUE_MAX_SIZE: {value}\n" + PYTHON_QUICKSTART).details


def test_empty_graph_is_invalid():
    assert "empty" in invalid(" \n").details


def test_read_graph_config(tmp_path):
    path = tmp_path / "graph.pbtxt"
    path.write_text(PYTHON_QUICKSTART)
    assert read_graph_config(path).nodes[0].options.handler_path == "/ws/model.py"
    with pytest.raises(ServingError) as caught:
        read_graph_config(tmp_path / "missing.pbtxt")
    assert caught.value.status is Status.FILE_INVALID
    assert str(tmp_path / "missing.pbtxt") in caught.value.details
    path.write_text('node { calculatr: "X" }')
    with pytest.raises(ServingError) as caught:
        read_graph_config(path)
    assert caught.value.status is Status.MEDIAPIPE_GRAPH_CONFIG_FILE_INVALID
    assert caught.value.details.startswith(f"{path}: ")


def test_graph_schema_stays_out_of_the_default_pool():
    """A real `mediapipe` install registers mediapipe.CalculatorGraphConfig in the default pool: pyovms must not."""
    import pyovms.servables.graphs.graph_config  # noqa: F401

    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("mediapipe.CalculatorGraphConfig")
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindExtensionByName("mediapipe.SyncSetInputStreamHandlerOptions.ext")
