"""Benchmarks, run by hand: `python -m bench.run --help`."""

import pyovms  # noqa: F401 - first: it turns OpenVINO's usage telemetry off before openvino is imported
