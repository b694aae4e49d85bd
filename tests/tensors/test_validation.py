"""Request checks in OVMS's order, string inputs, and shapes numpy cannot hold."""

from __future__ import annotations

import pytest

from pyovms.errors import ServingError, Status
from pyovms.tensors import datatypes
from pyovms.tensors.messages import InferInput, InferRequest, TensorSpec
from pyovms.tensors.shapes import Dim
from pyovms.tensors.validation import prepare_inputs


def test_validation_order_count_before_names():
    spec = {"b": TensorSpec("b", "FP32", "FP32", (Dim.static(1), Dim.static(2)), 0)}
    request = InferRequest("m", inputs=[InferInput("x", "FP32", (1, 2)), InferInput("y", "FP32", (1, 2))])
    with pytest.raises(ServingError) as info:
        prepare_inputs(spec, request)
    assert info.value.message == "Invalid number of inputs - Expected: 1; Actual: 2"


def test_bytes_framing_is_checked_before_the_shape():
    spec = {"s": TensorSpec("s", "BYTES", "STRING", (Dim.static(2),), 0, "string")}
    request = InferRequest("m", inputs=[InferInput("s", "BYTES", (3,), raw=b"\x09\x00\x00\x00ab")], raw_input_count=1)
    with pytest.raises(ServingError) as info:
        prepare_inputs(spec, request)
    assert info.value.status is Status.INVALID_INPUT_FORMAT


def _strings_request(raw: bytes, shape: tuple[int, ...]) -> InferRequest:
    return InferRequest("m", inputs=[InferInput("s", "BYTES", shape, raw=raw)], raw_input_count=1)


STRING_SPEC = TensorSpec("s", "BYTES", "STRING", (Dim(0, -1),), 0, bytes_hint="string")


def test_string_element_count_is_refused_before_splitting():
    import time

    many_empty = b"\0\0\0\0" * 5_000_000  # 20 MB of empty elements
    started = time.perf_counter()
    with pytest.raises(ServingError) as info:
        prepare_inputs({"s": STRING_SPEC}, _strings_request(many_empty, (1 << 40,)))
    assert info.value.status == Status.INVALID_STRING_MAX_SIZE_EXCEEDED
    pending = prepare_inputs({"s": STRING_SPEC}, _strings_request(many_empty, (2,)))["s"]
    with pytest.raises(ServingError) as info:
        pending.convert()  # large buffers are split on a worker thread (resolve_pending)
    assert (
        info.value.message
        == "Invalid number of values in tensor proto container - Expected: 2 values; Actual: more than 1028 values; "
        "input name: s"
    )
    assert time.perf_counter() - started < 1.0  # neither request split the 5 million elements


def test_large_string_buffers_are_split_off_the_event_loop():
    import asyncio

    from pyovms.tensors.validation import PendingStrings, resolve_pending

    items = [b"x" * 100] * 20_000  # 2 MB
    request = _strings_request(datatypes.join_bytes(items), (len(items),))
    prepared = prepare_inputs({"s": STRING_SPEC}, request)
    assert isinstance(prepared["s"], PendingStrings)
    resolved = asyncio.run(resolve_pending(prepared))
    assert resolved["s"].shape == (20_000,)
    assert resolved["s"][0] == b"x" * 100


@pytest.mark.parametrize("shape", [(0, 2, 1 << 62), (1 << 62, 0, 4), (1 << 31, 1 << 31, 4)])
def test_shapes_numpy_cannot_hold_are_refused_everywhere(shape):
    from pyovms.servables.graphs.packets import OVTENSOR, to_packet
    from pyovms.tensors.node_tensor import tensor_from_input

    tensor = InferInput("x", "FP32", shape, raw=b"")
    spec = TensorSpec("x", "FP32", "FP32", tuple(Dim(0, -1) for _ in shape), 0)
    for call in (
        lambda: prepare_inputs({"x": spec}, InferRequest("m", inputs=[tensor], raw_input_count=1)),
        lambda: to_packet(OVTENSOR, tensor),
        lambda: tensor_from_input(tensor),
    ):
        with pytest.raises(ServingError) as info:
            call()
        assert info.value.status == Status.INVALID_CONTENT_SIZE
        assert info.value.details.endswith("input name: x")
