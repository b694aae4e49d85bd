"""Python custom node libraries that tests serve."""

BLOCKING = """
import os
import time

def get_inputs_info(params, state):
    return {"x": ("FP32", [1, 10])}

def get_outputs_info(params, state):
    return {"y": ("FP32", [1, 10])}

def execute(inputs, params, state):
    open(params["started"], "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(params["release"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"y": inputs["x"] * float(params.get("factor", "1"))}
"""
"""x FP32 [1,10] -> y = x * factor: each call creates the file `started`, then waits for the file `release` (two
minutes at most), so a test holds a request in flight for as long as it needs, without sleeping."""
