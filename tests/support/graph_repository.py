"""Graphs for the graph and streaming tests: graph.pbtxt files and Python handlers written here, over real
OpenVINO models built by the tests.

| graph | what it does |
|---|---|
| upper | one Python node: BYTES text in, the same text upper-cased out (OVMS's Python quickstart) |
| double_then_dummy | Python node doubles x -> converter -> OpenVINO `dummy` (a = b + 1): y = 2x + 1 |
| dummy_graph | session + inference calculators on `dummy`, untagged (OVTENSOR) streams, from a subconfig.json |
| dummy_to_python | `dummy` then the converter towards Python: the output is a pyovms.Tensor named `scores` |
| ghost_session | a session on a model that is not served (each request: precondition failed) |
| words | generative node: yields one response per word of the text, over a LOOPBACK back edge |
| greeting | SidePacketToStreamCalculator: sends the `greeting` request parameter at each `tick` packet |
| moody | Python node that raises on "boom", returns a non-list on "wrong", a subset of outputs on "half" |
| pair | Python node with inputs A:a and B:b (ordered by tag), output c = a - b; declares a graph queue |
| echo | REQUEST/RESPONSE pass-through |
| slow_words | generative node that sleeps between yields and records in a file when its generator is closed |
| counted | appends "-v1" to its input; `finalize` records in a file (reload tests edit the suffix) |
| broken | names a calculator pyovms does not have (stays not loaded) |
| bad_init | a handler whose initialize raises (stays not loaded) |
"""

from __future__ import annotations

import json
from pathlib import Path

from . import models

PYTHON_NODE = """
node {{
  name: "{name}"
  calculator: "PythonExecutorCalculator"
  input_side_packet: "PYTHON_NODE_RESOURCES:py"
{streams}
  node_options: {{
    [type.googleapis.com / mediapipe.PythonExecutorCalculatorOptions]: {{
      handler_path: "{handler}"
    }}
  }}
}}
"""

LOOPBACK = """
  input_stream: "LOOPBACK:loopback"
  input_stream_info: {
    tag_index: 'LOOPBACK:0',
    back_edge: true
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
  output_stream: "LOOPBACK:loopback"
"""

TEXT_HELPERS = '''
import numpy as np
from pyovms import Tensor


def texts(tensor):
    """The strings of a BYTES tensor (length-prefixed elements), or its bytes as one string."""
    data = bytes(tensor)
    if tensor.datatype != "BYTES":
        return [data]
    items, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset:offset + 4], "little")
        items.append(data[offset + 4:offset + 4 + size])
        offset += 4 + size
    return items


def frame(items):
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


def bytes_tensor(name, items):
    return Tensor(name, frame(items), shape=(len(items),), datatype="BYTES")
'''

HANDLERS = {
    "upper.py": TEXT_HELPERS
    + """

class OvmsPythonModel:
    def initialize(self, kwargs):
        self.output_name = kwargs["output_names"][0]
        self.kwargs = kwargs

    def execute(self, inputs):
        return [bytes_tensor(self.output_name, [t.upper() for t in texts(inputs[0])])]
""",
    "double.py": """
import numpy as np
from pyovms import Tensor


class OvmsPythonModel:
    def execute(self, inputs):
        x = np.array(inputs[0])
        return [Tensor("doubled", (x * 2).astype(np.float32))]
""",
    "words.py": TEXT_HELPERS
    + """

class OvmsPythonModel:
    def execute(self, inputs):
        for word in texts(inputs[0])[0].split():
            yield [bytes_tensor("word", [word])]
""",
    "slow_words.py": TEXT_HELPERS
    + """
import os
import time


class OvmsPythonModel:
    def initialize(self, kwargs):
        self.marker = os.path.join(kwargs["base_path"], "closed.txt")

    def execute(self, inputs):
        try:
            for word in texts(inputs[0])[0].split():
                time.sleep(0.05)
                yield [bytes_tensor("word", [word])]
        finally:
            with open(self.marker, "a") as f:
                f.write("closed\\n")
""",
    "moody.py": TEXT_HELPERS
    + """

class OvmsPythonModel:
    def execute(self, inputs):
        text = texts(inputs[0])[0]
        if text == b"boom":
            raise ValueError("boom went the node")
        if text == b"exit":
            raise SystemExit(5)
        if text == b"wrong":
            return Tensor("out", b"not a list")
        if text == b"half":
            return [bytes_tensor("out", [text])]
        return [bytes_tensor("out", [text]), bytes_tensor("length", [str(len(text)).encode()])]
""",
    "pair.py": """
import numpy as np
from pyovms import Tensor


class OvmsPythonModel:
    def initialize(self, kwargs):
        self.names = kwargs["input_names"]

    def execute(self, inputs):
        a, b = (np.array(t) for t in inputs)
        assert [t.name for t in inputs] == ["a", "b"], [t.name for t in inputs]
        return [Tensor("c", a - b)]
""",
    "counted.py": """
import os
from pyovms import Tensor

SUFFIX = b"-v1"


class OvmsPythonModel:
    def initialize(self, kwargs):
        self.marker = os.path.join(kwargs["base_path"], "finalized.txt")

    def execute(self, inputs):
        return [Tensor("y", bytes(inputs[0]) + SUFFIX)]

    def finalize(self):
        with open(self.marker, "a") as f:
            f.write(SUFFIX.decode() + "\\n")
""",
    "bad_init.py": """
class OvmsPythonModel:
    def initialize(self, kwargs):
        raise RuntimeError("cannot initialize")

    def execute(self, inputs):
        return inputs
""",
}


def python_graph(inputs: list[str], outputs: list[str], node_streams: list[str], handler: str, name: str) -> str:
    head = "".join(f'input_stream: "{s}"\n' for s in inputs) + "".join(f'output_stream: "{s}"\n' for s in outputs)
    streams = "\n".join(f"  {s}" for s in node_streams)
    return head + PYTHON_NODE.format(name=name, streams=streams, handler=handler)


def generative_graph(input_name: str, output_name: str, handler: str, name: str) -> str:
    """One Python node between an OVMS_PY_TENSOR input and output stream, with a LOOPBACK back edge so that its
    `execute` may yield."""
    node_streams = [f'input_stream: "INPUT:{input_name}"' + LOOPBACK, f'output_stream: "OUTPUT:{output_name}"']
    inputs, outputs = [f"OVMS_PY_TENSOR:{input_name}"], [f"OVMS_PY_TENSOR:{output_name}"]
    return python_graph(inputs, outputs, node_streams, handler, name)


SESSION_AND_INFERENCE = """
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
  input_stream: "DUMMY_IN:%(input)s"
  output_stream: "DUMMY_OUT:%(output)s"
  node_options: {
    [type.googleapis.com / mediapipe.OpenVINOInferenceCalculatorOptions]: {
      tag_to_input_tensor_names { key: "DUMMY_IN" value: "b" }
      tag_to_output_tensor_names { key: "DUMMY_OUT" value: "a" }
    }
  }
}
"""

GRAPHS = {
    "upper": python_graph(
        ["OVMS_PY_TENSOR:text"], ["OVMS_PY_TENSOR:result"], ['input_stream: "INPUT:text"', 'output_stream: "OUTPUT:result"'],
        "upper.py", "upper_node",
    ),
    "double_then_dummy": python_graph(
        ["OVMS_PY_TENSOR:x"], ["OVTENSOR:y"], ['input_stream: "INPUT:x"', 'output_stream: "OUTPUT:doubled"'],
        "double.py", "double_node",
    )
    + """
node {
  calculator: "PyTensorOvTensorConverterCalculator"
  input_stream: "OVMS_PY_TENSOR:doubled"
  output_stream: "OVTENSOR:doubled_ov"
}
"""
    + SESSION_AND_INFERENCE % {"input": "doubled_ov", "output": "y"},
    "dummy_graph": 'input_stream: "in"\noutput_stream: "out"\n' + SESSION_AND_INFERENCE % {"input": "in", "output": "out"},
    "dummy_to_python": 'input_stream: "in"\noutput_stream: "OVMS_PY_TENSOR:py_out"\n'
    + SESSION_AND_INFERENCE % {"input": "in", "output": "ov_out"}
    + """
node {
  calculator: "PyTensorOvTensorConverterCalculator"
  input_stream: "OVTENSOR:ov_out"
  output_stream: "OVMS_PY_TENSOR:py_out"
  node_options: {
    [type.googleapis.com / mediapipe.PyTensorOvTensorConverterCalculatorOptions]: {
      tag_to_output_tensor_names { key: "OVMS_PY_TENSOR" value: "scores" }
    }
  }
}
""",
    "ghost_session": 'input_stream: "in"\noutput_stream: "out"\n'
    + (SESSION_AND_INFERENCE % {"input": "in", "output": "out"}).replace('"dummy"', '"ghost"'),
    "words": generative_graph("text", "word", "words.py", "words_node"),
    "slow_words": generative_graph("text", "word", "slow_words.py", "slow_node"),
    "greeting": """
input_stream: "TICK:tick"
output_stream: "OVTENSOR:greeting_out"
input_side_packet: "GREETING:greeting"
node {
  calculator: "SidePacketToStreamCalculator"
  input_side_packet: "greeting"
  input_stream: "TICK:tick"
  output_stream: "AT_TICK:greeting_out"
}
""",
    "moody": python_graph(
        ["OVMS_PY_TENSOR:text"],
        ["OVMS_PY_TENSOR:out", "OVMS_PY_TENSOR_LENGTH:length"],
        ['input_stream: "INPUT:text"', 'output_stream: "OUTPUT:out"', 'output_stream: "LENGTH:length"'],
        "moody.py", "moody_node",
    ),
    "pair": "# OVMS_GRAPH_QUEUE_MAX_SIZE: 4\n"
    + python_graph(
        ["OVMS_PY_TENSOR_B:b", "OVMS_PY_TENSOR_A:a"], ["OVMS_PY_TENSOR:c"],
        ['input_stream: "B:b"', 'input_stream: "A:a"', 'output_stream: "OUTPUT:c"'],
        "pair.py", "pair_node",
    ),
    "echo": """
input_stream: "REQUEST:request"
output_stream: "RESPONSE:response"
node {
  calculator: "PassThroughCalculator"
  input_stream: "REQUEST:request"
  output_stream: "RESPONSE:response"
}
""",
    "broken": 'input_stream: "in"\noutput_stream: "out"\nnode {\n  calculator: "NoSuchCalculator"\n'
    '  input_stream: "in"\n  output_stream: "out"\n}\n',
    "counted": python_graph(
        ["OVMS_PY_TENSOR:x"], ["OVMS_PY_TENSOR:y"], ['input_stream: "INPUT:x"', 'output_stream: "OUTPUT:y"'],
        "counted.py", "counted_node",
    ),
    "bad_init": python_graph(
        ["OVMS_PY_TENSOR:x"], ["OVMS_PY_TENSOR:y"], ['input_stream: "INPUT:x"', 'output_stream: "OUTPUT:y"'],
        "bad_init.py", "bad_node",
    ),
}  # fmt: skip


def build(root: Path) -> dict:
    """Write every graph (each in its own directory, with its handler) and `dummy` (from dummy_graph's
    subconfig.json); return config.json, using both the model_config_list and mediapipe_config_list styles."""
    for name, text in GRAPHS.items():
        directory = root / name
        directory.mkdir(parents=True)
        (directory / "graph.pbtxt").write_text(text)
        for handler, code in HANDLERS.items():
            if f'"{handler}"' in text:
                (directory / handler).write_text(code)
    models.build_dummy(root / "dummy_graph" / "models" / "dummy" / "1" / "model.xml")
    (root / "dummy_graph" / "subconfig.json").write_text(
        json.dumps({"model_config_list": [{"config": {"name": "dummy", "base_path": "models/dummy"}}]})
    )
    model_style = ["upper", "double_then_dummy", "dummy_graph", "words", "moody", "broken"]
    return {
        "model_config_list": [{"config": {"name": n, "base_path": n}} for n in model_style],
        "mediapipe_config_list": [{"name": n} for n in GRAPHS if n not in model_style],
    }
