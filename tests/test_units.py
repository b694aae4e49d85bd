"""Unit tests of the protocol-neutral pieces: tensors, shapes, version policy, errors, status table, config."""

from __future__ import annotations

import json
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from pyovms.errors import ServingError, Status
from pyovms.frontends.grpc.status import GRPC_CODES, grpc_code
from pyovms.repository.config import load_config
from pyovms.repository.registry import parse_version
from pyovms.repository.version_policy import VersionPolicy
from pyovms.tensors import datatypes
from pyovms.tensors.messages import InferInput, InferOutput, InferRequest, TensorSpec
from pyovms.tensors.shapes import Dim, format_dims, parse_shape
from pyovms.tensors.validation import prepare_inputs


def test_bytes_framing_round_trip():
    items = [b"", b"a", "zażółć".encode(), bytes(range(256))]
    framed = datatypes.join_bytes(items)
    assert framed[:4] == struct.pack("<I", 0)
    assert datatypes.split_bytes(framed) == items


@pytest.mark.parametrize("buffer", [b"\x05\x00\x00\x00abc", b"\x01\x00\x00\x00ab", b"\x01\x00"])
def test_bytes_framing_rejects_broken_buffers(buffer):
    assert datatypes.split_bytes(buffer) is None


def test_raw_decode_is_a_view_without_copy():
    buffer = np.arange(6, dtype="<f4").tobytes()
    array = datatypes.decode_raw(datatypes.DATATYPES["FP32"], (2, 3), buffer)
    assert array.base is not None and not array.flags.owndata
    np.testing.assert_array_equal(array, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_contents_decode_casts_like_c():
    contents = SimpleNamespace(int_contents=[300, -129, 5])
    array = datatypes.decode_contents(datatypes.DATATYPES["INT8"], (3,), contents)
    assert array.dtype == np.int8 and array.tolist() == [44, 127, 5]


def test_openvino_types_map_to_kserve_and_ovms_precisions():
    assert datatypes.from_openvino("f32") == ("FP32", "FP32")
    assert datatypes.from_openvino("i64") == ("INT64", "I64")
    assert datatypes.from_openvino("string") == ("BYTES", "STRING")
    assert datatypes.from_openvino("bf16") == ("INVALID", "BF16")


def test_output_encoding_of_strings_and_numbers():
    output = InferOutput.from_array("s", np.array([b"ab", b"c"], dtype=object))
    assert (output.datatype, output.shape) == ("BYTES", (2,))
    assert output.as_numpy().tolist() == [b"ab", b"c"]
    number = InferOutput.from_array("n", np.array([[1, 2]], dtype=np.uint16))
    assert (number.datatype, number.shape, number.raw) == ("UINT16", (1, 2), b"\x01\x00\x02\x00")


def test_strings_from_2d_cut_at_first_nul():
    rows = np.array([[97, 98, 0, 99], [100, 101, 102, 103]], dtype=np.uint8)
    assert datatypes.strings_from_2d(rows).tolist() == [b"ab", b"defg"]


@pytest.mark.parametrize(
    ("text", "dims"),
    [("(1,3,224,224)", "(1,3,224,224)"), ("[1, -1]", "(1,-1)"), ("(1:4,10)", "([1~4],10)"), ("()", "()")],
)
def test_parse_shape(text, dims):
    assert format_dims(parse_shape(text)) == dims


@pytest.mark.parametrize("text", ["1,3", "(1,a)", "(4:1)", "(-2)"])
def test_parse_shape_rejects(text):
    with pytest.raises(ValueError):
        parse_shape(text)


def test_dim_accepts():
    assert Dim.static(3).accepts(3) and not Dim.static(3).accepts(4)
    assert Dim.any().accepts(0) and Dim.any().accepts(10**9)
    assert Dim(2, 5).accepts(5) and not Dim(2, 5).accepts(1)
    assert Dim(2, 5).metadata_value == -1 and Dim.static(7).metadata_value == 7


@pytest.mark.parametrize(
    ("policy", "selected"),
    [
        (None, [5]),
        ({"all": {}}, [1, 2, 5]),
        ({"latest": {"num_versions": 2}}, [2, 5]),
        ({"specific": {"versions": [1, 3]}}, [1]),
    ],
)
def test_version_policy_select(policy, selected):
    assert VersionPolicy.parse(policy).select([5, 1, 2]) == selected


@pytest.mark.parametrize(
    "policy", [{"latest": {"num_versions": 0}}, {"all": {}, "latest": {}}, {"specific": {}}, {"newest": {}}]
)
def test_version_policy_rejects(policy):
    with pytest.raises(ValueError):
        VersionPolicy.parse(policy)


@pytest.mark.parametrize(
    ("text", "value"),
    [("", 0), ("0", 0), ("7", 7), ("-3", -3), ("-9223372036854775808", -(2**63)), ("9223372036854775807", 2**63 - 1)],
)
def test_parse_version(text, value):
    assert parse_version(text) == value


@pytest.mark.parametrize("text", ["01", "abc", "1.0", " 1", "-0", "9223372036854775808", "-9223372036854775809"])
def test_parse_version_rejects(text):
    with pytest.raises(ServingError) as info:
        parse_version(text)
    assert info.value.status is Status.MODEL_VERSION_INVALID_FORMAT


def test_error_message_format():
    error = ServingError(Status.INVALID_NO_OF_INPUTS, "Expected: 1; Actual: 2")
    assert str(error) == "Invalid number of inputs - Expected: 1; Actual: 2"
    assert ServingError(Status.MODEL_NAME_MISSING).message == "Model with requested name is not found"


def test_every_status_has_a_grpc_code_and_none_is_unknown():
    import grpc

    assert set(GRPC_CODES) == set(Status)
    assert all(grpc_code(status) is not grpc.StatusCode.UNKNOWN for status in Status)


def test_every_status_has_an_http_code_and_only_server_faults_are_500():
    from pyovms.frontends.rest.status import HTTP_CODES

    assert set(HTTP_CODES) == set(Status)
    server_faults = {s for s, code in HTTP_CODES.items() if code == 500}
    assert all(GRPC_CODES[s].name == "INTERNAL" for s in server_faults)


def test_validation_order_count_before_names():
    spec = {"b": TensorSpec("b", "FP32", "FP32", (Dim.static(1), Dim.static(2)), 0)}
    request = InferRequest("m", inputs=[InferInput("x", "FP32", (1, 2)), InferInput("y", "FP32", (1, 2))])
    with pytest.raises(ServingError) as info:
        prepare_inputs(spec, request)
    assert info.value.message == "Invalid number of inputs - Expected: 1; Actual: 2"


def _write_config(tmp_path, document):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    return path


def test_config_resolves_relative_base_path(tmp_path):
    path = _write_config(tmp_path, {"model_config_list": [{"config": {"name": "m", "base_path": "models/m"}}]})
    config = load_config(path)
    assert config.models[0].base_path == str((tmp_path / "models" / "m").resolve())


@pytest.mark.parametrize(
    ("document", "keyword"),
    [
        ({}, "required"),
        ({"model_config_list": [], "unknown": 1}, "additionalProperties"),
        ({"model_config_list": [{"config": {"name": "m", "bogus": 1}}]}, "additionalProperties"),
        ({"model_config_list": [{"config": {"base_path": "x"}}]}, "required"),
        ({"model_config_list": [{"config": {"name": "m", "nireq": -1}}]}, "minimum"),
    ],
)
def test_config_schema_errors(tmp_path, document, keyword):
    with pytest.raises(ServingError) as info:
        load_config(_write_config(tmp_path, document))
    assert info.value.status is Status.JSON_INVALID
    assert "JSON schema parse error:#/" in info.value.message and f"Keyword:{keyword}" in info.value.message


def test_config_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ServingError) as info:
        load_config(bad)
    assert info.value.status is Status.JSON_INVALID
    with pytest.raises(ServingError) as info:
        load_config(tmp_path / "missing.json")
    assert info.value.status is Status.FILE_INVALID


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


def test_the_network_guard_reads_the_kernels_tables():
    """tests/support/network_guard.py: addresses as /proc/net/{tcp,udp}[6] write them; only connected rows to addresses outside
    the loopback network count; a sample of this process's loopback connection records nothing."""
    import socket

    from .support.network_guard import NetworkGuard, outbound_sockets, remote_address

    assert str(remote_address("0100007F:1F90")) == "127.0.0.1"
    assert str(remote_address("0A00020F:01BB")) == "15.2.0.10"
    assert str(remote_address("00000000000000000000000001000000:0050")) == "::1"
    assert str(remote_address("0000000000000000FFFF00000100007F:0050")) == "127.0.0.1"  # IPv4-mapped
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    rows = [
        header,
        "   0: 0100007F:9C40 0A00020F:01BB 01 00000000:00000000 00:00000000 00000000  0 0 111 1",  # established, outside
        "   1: 0100007F:9C41 0A00020F:01BB 02 00000000:00000000 00:00000000 00000000  0 0 112 1",  # SYN_SENT, outside
        "   2: 0100007F:9C42 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  0 0 113 1",  # loopback
        "   3: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 114 1",  # listening
        "   4: 0100007F:9C43 0A00020F:01BB 06 00000000:00000000 00:00000000 00000000  0 0 115 1",  # TIME_WAIT
    ]
    assert outbound_sockets(rows, "tcp") == {111: "15.2.0.10:443", 112: "15.2.0.10:443"}
    guard = NetworkGuard()
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()):
        guard.sample()
    assert guard.seen == set()
