"""The calculators a graph node may name, and what each does with its packets (spec §6.4, §6.5).

A calculator class is prepared once per node when the graph definition loads (`prepare`: check the node's
configuration, load shared resources such as a Python handler) and instantiated once per graph run, so the state
of one stream (a generator in progress) stays with that stream. A node naming a calculator missing from
`CALCULATORS` makes the whole graph fail to load.

Packets carry numpy arrays on `OVTENSOR` (or untagged) streams, `pyovms.Tensor` on `OVMS_PY_TENSOR` streams, and
plain values for side packets.

- `base.py`: the `Calculator` base class, the load context, options and error helpers;
- `python.py`: `PythonExecutorCalculator` (Python nodes);
- `openvino.py`: the session and inference calculators that run served models;
- `streams.py`: pass-through, the tensor converter, side packet to stream.
"""

from __future__ import annotations

from .base import Calculator, LoadContext
from .openvino import OpenVINOInferenceCalculator, OpenVINOModelServerSessionCalculator, OVMSOVCalculator
from .python import PythonExecutorCalculator
from .streams import PassThroughCalculator, PyTensorOvTensorConverterCalculator, SidePacketToStreamCalculator

CALCULATORS: dict[str, type[Calculator]] = {
    calculator.name: calculator
    for calculator in (
        PassThroughCalculator,
        PythonExecutorCalculator,
        OpenVINOModelServerSessionCalculator,
        OpenVINOInferenceCalculator,
        OVMSOVCalculator,
        PyTensorOvTensorConverterCalculator,
        SidePacketToStreamCalculator,
    )
}

__all__ = ["CALCULATORS", "Calculator", "LoadContext"]
