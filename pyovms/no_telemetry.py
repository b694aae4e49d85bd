"""OpenVINO's usage telemetry, turned off in pyovms's process.

Importing `openvino` imports its model converter, which sends a usage event to Google Analytics through the
`openvino_telemetry` package whenever that package is installed (it is one of openvino's dependencies). A model
server reports its starts to nobody: marking the package as not importable makes OpenVINO use its own no-op
stand-in. Imported first by `pyovms/__init__.py`; a program that imported openvino before pyovms has sent its event
already.
"""

import sys

sys.modules.setdefault("openvino_telemetry", None)
