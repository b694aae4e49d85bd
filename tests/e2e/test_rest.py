"""The REST API (spec §7.1, §7.2, §3.4) on the session server: routes, JSON and binary inference for every
datatype, errors with their HTTP codes and messages, CORS; tritonclient.http and plain HTTP (http.client)."""

from __future__ import annotations

import http.client
import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from ..conftest import NUMERIC_DATATYPES
from ..support.server_process import ServerProcess

NUMPY_TYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
HEADER_LENGTH = "Inference-Header-Content-Length"


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


def call(server: ServerProcess, method: str, path: str, body: bytes | str | dict | None = None, **headers) -> Reply:
    """One plain HTTP request; the path is sent exactly as given."""
    if isinstance(body, dict):
        body = json.dumps(body)
    connection = http.client.HTTPConnection(server.rest_address, timeout=30)
    try:
        connection.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def infer_body(inputs: list[dict], **fields) -> dict:
    return {"inputs": inputs, **fields}


DUMMY_INPUT = {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))}


def _values(datatype: str) -> np.ndarray:
    """Edge values JSON can carry (no NaN or infinities), shaped [2, 3]."""
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if datatype == "BOOL":
        values = [True, False, False, True, True, False]
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = [info.min, info.max, 0, 1, int(info.max) // 2 + 1, info.max - 1]
    else:
        info = np.finfo(dtype)
        values = [info.max, info.min, info.tiny, -0.0, 1.5, -2.25]
    return np.array(values, dtype=dtype).reshape(2, 3)


@pytest.fixture
def then_dummy_works(server):
    yield
    reply = call(server, "POST", "/v2/models/dummy/infer", infer_body([DUMMY_INPUT]))
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0]["data"] == [float(v + 1) for v in range(10)]


# ---------------------------------------------------------------------------------------------- routes


def test_health(server):
    live = call(server, "GET", "/v2/health/live")
    ready = call(server, "GET", "/v2/health/ready")
    assert (live.status, live.body, ready.status, ready.body) == (200, b"", 200, b"")


def test_server_metadata(server):
    reply = call(server, "GET", "/v2")
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/json")
    document = reply.json()
    assert document["name"] == "pyovms"
    assert document["extensions"] == [
        "model_configuration",
        "statistics",
    ]  # the repository extension is listed with --allow_model_control


@pytest.mark.parametrize("path", ["/v2/models/dummy", "/v2/models/dummy/", "/v2/models/dummy/versions/1"])
def test_model_metadata(server, path):
    reply = call(server, "GET", path)
    assert reply.status == 200
    assert reply.json() == {
        "name": "dummy",
        "versions": ["1"],
        "platform": "OpenVINO",
        "inputs": [{"name": "b", "datatype": "FP32", "shape": [1, 10]}],
        "outputs": [{"name": "a", "datatype": "FP32", "shape": [1, 10]}],
    }


def test_percent_decoded_model_name(server):
    assert call(server, "GET", "/v2/models/spaced%20name").json()["name"] == "spaced name"
    reply = call(server, "POST", "/v2/models/spaced%20name/infer", infer_body([DUMMY_INPUT]))
    assert reply.status == 200 and reply.json()["model_name"] == "spaced name"


def test_model_ready(server):
    assert call(server, "GET", "/v2/models/dummy/ready").status == 200
    assert call(server, "GET", "/v2/models/versions_all/versions/2/ready").status == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v2/models/nope", 404, "Model with requested name is not found"),
        ("GET", "/v2/models/dummy/versions/7", 404, "Model with requested version is not found"),
        ("GET", "/v2/models/dummy/versions/99999999999999999999", 404, "Model with requested version is not found"),
        ("GET", "/v2/models/broken/ready", 404, "Model with requested version is not found"),
        ("GET", "/v2/models/nope/ready", 404, "Model with requested name is not found"),
        ("GET", "/v2/", 400, "Invalid request URL"),
        ("GET", "/v2/models/dummy/versions/abc", 400, "Invalid request URL"),
        ("GET", "/v3/nothing", 400, "Invalid request URL"),
        ("GET", "/v2/models/../v2", 400, "The provided base path is invalid or doesn't exists"),
        ("GET", "/v2/models/dummy/infer", 406, "Unsupported method"),
        ("POST", "/v2/health/live", 406, "Unsupported method"),
        ("POST", "/v2", 406, "Unsupported method"),
        ("PUT", "/v2/models/dummy/infer", 406, "Unsupported method"),
        ("DELETE", "/v2", 406, "Unsupported method"),
    ],
)
def test_route_errors(server, method, path, status, message):
    reply = call(server, method, path)
    assert reply.status == status
    assert reply.error.startswith(message)


def test_config_status(server):
    document = call(server, "GET", "/v1/config").json()
    assert document["dummy"] == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}}
        ]
    }
    assert [v["version"] for v in document["versions_all"]["model_version_status"]] == ["1", "2", "3"]
    (broken,) = document["broken"]["model_version_status"]
    assert (broken["state"], broken["status"]["error_code"]) == ("LOADING", "UNKNOWN")


def test_triton_config_and_statistics_routes(http_client):
    config = http_client.get_model_config("dummy")
    assert config["max_batch_size"] == 0 and config["backend"] == "openvino"
    assert config["input"] == [{"name": "b", "data_type": "TYPE_FP32", "dims": [1, 10]}]
    statistics = http_client.get_inference_statistics("versions_all", "2")["model_stats"]
    assert [(s["name"], s["version"]) for s in statistics] == [("versions_all", "2")]
    assert "queue" in statistics[0]["inference_stats"]
    listed = [s["name"] for s in http_client.get_inference_statistics()["model_stats"]]
    assert "dummy" in listed and "broken" not in listed


# ---------------------------------------------------------------------------------------------- inference


def test_tritonclient_http_json_and_binary(http_client):
    data = np.arange(10, dtype=np.float32).reshape(1, 10)
    for binary in (False, True):
        tensor = httpclient.InferInput("b", [1, 10], "FP32")
        tensor.set_data_from_numpy(data, binary_data=binary)
        output = httpclient.InferRequestedOutput("a", binary_data=binary)
        result = http_client.infer("dummy", [tensor], outputs=[output], request_id="r-1")
        np.testing.assert_array_equal(result.as_numpy("a"), data + 1)
        assert result.get_response()["id"] == "r-1"
        assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize(
    ("datatype", "binary"),
    [(d, False) for d in NUMERIC_DATATYPES if d != "FP16"] + [(d, True) for d in NUMERIC_DATATYPES],
    ids=lambda value: {False: "json", True: "binary"}.get(value, value) if isinstance(value, bool) else value,
)  # FP16 travels in binary form only (its JSON refusal is tested below)
def test_every_datatype_round_trip(http_client, datatype, binary):
    values = _values(datatype)
    tensor = httpclient.InferInput("in", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    output = httpclient.InferRequestedOutput("out", binary_data=binary)
    result = http_client.infer(f"passthrough_{datatype}", [tensor], outputs=[output])
    got = result.as_numpy("out")
    assert got.dtype == values.dtype and got.shape == values.shape
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize(
    ("datatype", "values"),
    [("INT64", [-(2**63), 2**63 - 1, -1]), ("UINT64", [0, 2**64 - 1, 2**63])],
)
def test_64_bit_integers_keep_their_full_range_in_json(server, datatype, values):
    body = infer_body([{"name": "in", "shape": [1, 3], "datatype": datatype, "data": values}])
    reply = call(server, "POST", f"/v2/models/passthrough_{datatype}/infer", body)
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0]["data"] == values


def test_nested_and_flat_data_are_equal(server):
    nested = {"name": "in", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]}
    flat = {**nested, "data": [1, 2, 3, 4, 5, 6]}
    ragged = {**nested, "data": [[1, 2], [3, 4, 5, 6]]}  # only the element count is checked, as in OVMS
    answers = [
        call(server, "POST", "/v2/models/passthrough_INT32/infer", infer_body([i])) for i in (nested, flat, ragged)
    ]
    assert [a.json()["outputs"][0] for a in answers] == [
        {"name": "out", "datatype": "INT32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}
    ] * 3


def test_strings_in_json_and_binary(server, http_client):
    body = infer_body([{"name": "in", "shape": [3], "datatype": "BYTES", "data": ["a", "", "zażółć"]}])
    reply = call(server, "POST", "/v2/models/string/infer", body)
    assert reply.json()["outputs"][0] == {"name": "out", "datatype": "BYTES", "shape": [3], "data": ["a", "", "zażółć"]}
    values = np.array([b"x\x00y", b"\xff\xfe", b"long" * 50], dtype=np.object_)
    tensor = httpclient.InferInput("in", [3], "BYTES")
    tensor.set_data_from_numpy(values, binary_data=True)
    result = http_client.infer("string", [tensor], outputs=[httpclient.InferRequestedOutput("out", binary_data=True)])
    assert list(result.as_numpy("out")) == list(values)


def test_every_requested_output_can_be_binary(server):
    body = infer_body(
        [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        outputs=[
            {"name": "times_two", "parameters": {"binary_data": True}},
            {"name": "negated"},
            {"name": "plus_one", "parameters": {"binary_data": True}},
        ],
    )
    reply = call(server, "POST", "/v2/models/three_outputs/infer", body)
    assert reply.status == 200
    length = int(reply.headers[HEADER_LENGTH.lower()])
    header = json.loads(reply.body[:length])
    outputs = {o["name"]: o for o in header["outputs"]}
    assert list(outputs) == ["negated", "plus_one", "times_two"]  # sorted by name
    assert outputs["negated"]["data"] == [-1.0, -2.0, -3.0, -4.0]
    binary = reply.body[length:]
    assert outputs["plus_one"]["parameters"] == {"binary_data_size": 16}
    assert outputs["times_two"]["parameters"] == {"binary_data_size": 16}
    np.testing.assert_array_equal(np.frombuffer(binary[:16], dtype=np.float32), [2, 3, 4, 5])
    np.testing.assert_array_equal(np.frombuffer(binary[16:], dtype=np.float32), [2, 4, 6, 8])


def test_binary_data_output_applies_to_every_output(server):
    body = infer_body([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}])
    body["parameters"] = {"binary_data_output": True}
    reply = call(server, "POST", "/v2/models/three_outputs/infer", body)
    length = int(reply.headers[HEADER_LENGTH.lower()])
    assert len(reply.body) == length + 3 * 16
    assert all("data" not in o for o in json.loads(reply.body[:length])["outputs"])


def test_binary_and_json_inputs_mix(server):
    payload = np.array([[1, 2, 3, 4]], dtype=np.float32).tobytes()
    header = json.dumps(
        infer_body([{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}])
    ).encode()
    reply = call(
        server, "POST", "/v2/models/three_outputs/infer", header + payload, **{HEADER_LENGTH: str(len(header))}
    )
    assert reply.status == 200, reply.body
    assert {o["name"]: o["data"] for o in reply.json()["outputs"]}["plus_one"] == [2.0, 3.0, 4.0, 5.0]
    # Two inputs, one in JSON and one binary, without binary_data_size (implicit size from the shape).
    two = json.dumps(
        infer_body(
            [
                {"name": "input1", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))},
                {"name": "input2", "shape": [1, 10], "datatype": "FP32"},
            ]
        )
    ).encode()
    raw = np.full(10, 100, dtype=np.float32).tobytes()
    reply = call(server, "POST", "/v2/models/add_two/infer", two + raw, **{HEADER_LENGTH: str(len(two))})
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0]["data"] == [100.0 + v for v in range(10)]


def test_request_id_and_parameters(server):
    body = infer_body([DUMMY_INPUT], id="abc", parameters={"key": "v", "flag": True, "n": 3})
    document = call(server, "POST", "/v2/models/dummy/infer", body).json()
    assert list(document) == ["model_name", "id", "model_version", "outputs"]
    assert document["id"] == "abc"


# ---------------------------------------------------------------------------------------------- errors


def _dummy_with(**changes) -> dict:
    return infer_body([{**DUMMY_INPUT, **changes}])


def _binary(inputs: list[dict], payload: bytes, header_length: str | None = None) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": inputs}).encode()
    return header + payload, {HEADER_LENGTH: header_length if header_length is not None else str(len(header))}


DEEP = ("[" * 101 + "]" * 101).encode()


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {}, 412, "The file is not valid json - Error: "),
        (b"[1, 2]", {}, 400, "Request body should be JSON object"),
        (b"{}", {}, 400, "Invalid JSON structure, missing inputs"),
        ({"inputs": []}, {}, 400, "Invalid JSON structure, missing inputs"),
        (b'{"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": ' + DEEP + b"}]}", {}, 400,
         "JSON nesting depth exceeds the allowed limit"),
        (_dummy_with(shape=[1, -10]), {}, 400, "Could not parse input content. Not valid ndarray detected"),
        (_dummy_with(shape="1,10"), {}, 400, "Could not parse input content. Not valid ndarray detected"),
        (_dummy_with(name=5), {}, 400, "Could not parse input content. Not valid ndarray detected"),
        (_dummy_with(data=["1"] * 10), {}, 400, "Could not parse input content. Not valid ndarray detected"),
        (_dummy_with(data=[True] * 10), {}, 400, "Could not parse input content. Not valid ndarray detected"),
        (_dummy_with(datatype="FP16"), {}, 400, "Could not parse input content. Not valid ndarray detected"),
        (_dummy_with(datatype="COMPLEX"), {}, 400, "Could not parse input content. Unsupported data precision"),
        (_dummy_with(data=list(range(9))), {}, 400, "Invalid number of values in tensor proto container - "
         "Expected: 10 values; Actual: 9 values; input name: b"),
        (_dummy_with(shape=[1, 11], data=list(range(11))), {}, 400, "Invalid input shape - Expected: (1,10); "
         "Actual: (1,11); input name: b"),
        (_dummy_with(name="c"), {}, 400, "Missing input with specific name - Required input: b"),
        (_dummy_with(datatype="INT32"), {}, 400, "Invalid input precision - Expected: FP32; Actual: INT32"),
        ({**_dummy_with(), "id": 5}, {}, 400, "Could not parse input content. Not valid ndarray detected"),
        ({**_dummy_with(), "parameters": {"p": [1]}}, {}, 400, "Could not parse request parameters"),
        ({**_dummy_with(), "outputs": [{"nam": "a"}]}, {}, 400, "Could not parse output content."),
        ({**_dummy_with(), "outputs": [{"name": "zzz"}]}, {}, 400, "Missing output with specific name"),
        (*_binary([{**DUMMY_INPUT, "data": None, "parameters": {"binary_data_size": 40}}], bytes(40)), 400,
         "Request contains values both in binary data and in content value"),
        (*_binary([{"name": "b", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 80}}],
                  bytes(40)), 400, "Received buffer size is smaller than binary_data_size parameter indicates"),
        (*_binary([{"name": "b", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": "40"}}],
                  bytes(40)), 400, "binary_data_size parameter is invalid and cannot be parsed"),
        (*_binary([{"name": "b", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": -1}}],
                  bytes(40)), 400, "binary_data_size parameter is invalid and cannot be parsed"),
        (*_binary([{"name": "b", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 36}}],
                  bytes(40)), 400, "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes"),
        (*_binary([{"name": "b", "shape": [1, 10], "datatype": "FP32"}], bytes(40), "abc"), 400,
         "Inference-Header-Content-Length header is invalid and couldn't be parsed"),
        (*_binary([{"name": "b", "shape": [1, 10], "datatype": "FP32"}], bytes(40), "99999"), 400,
         "Inference-Header-Content-Length header exceeds actual payload length"),
    ],
)  # fmt: skip
def test_infer_errors(server, then_dummy_works, body, headers, status, message):
    reply = call(server, "POST", "/v2/models/dummy/infer", body, **headers)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.error.startswith(message), reply.error


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT8", [300, 0, 0, 0, 0, 0], "INT8 values must be in [-128, 127]"),
        ("UINT8", [-1, 0, 0, 0, 0, 0], "UINT8 values must be in [0, 255]"),
        ("INT32", [1.5, 0, 0, 0, 0, 0], "INT32 data must be integers"),
        ("INT64", [2**63, 0, 0, 0, 0, 0], "INT64 values must be in [-9223372036854775808, 9223372036854775807]"),
        ("BOOL", [1, 0, 0, 0, 0, 0], "BOOL data must be booleans"),
    ],
)
def test_json_values_are_checked_per_datatype(server, then_dummy_works, datatype, data, message):
    body = infer_body([{"name": "in", "shape": [2, 3], "datatype": datatype, "data": data}])
    reply = call(server, "POST", f"/v2/models/passthrough_{datatype}/infer", body)
    assert reply.status == 400
    assert reply.error == f"Could not parse input content. Not valid ndarray detected - {message}; input name: in"


def test_fp16_output_in_json_is_refused_with_a_hint(http_client):
    values = _values("FP16")
    tensor = httpclient.InferInput("in", list(values.shape), "FP16")
    tensor.set_data_from_numpy(values, binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        http_client.infer("passthrough_FP16", [tensor], outputs=[httpclient.InferRequestedOutput("out", False)])
    assert "FP16 output out is sent in binary form only" in info.value.message()


# ---------------------------------------------------------------------------------------------- CORS


def test_cors_defaults(server):
    preflight = call(
        server, "OPTIONS", "/v2/models/dummy/infer", Origin="http://app.example", Access_Control_Request_Method="POST"
    )
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"] == "*"
    assert preflight.headers["access-control-allow-headers"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    reply = call(server, "GET", "/v2/health/ready", Origin="http://app.example")
    assert reply.headers["access-control-allow-origin"] == "*"


@pytest.fixture(scope="module")
def strict_server(repository, tmp_path_factory):
    process = ServerProcess(
        [
            "--config_path", str(repository), "--allowed_origins", "http://a.example,http://b.example",
            "--allowed_methods", "GET,POST", "--allowed_headers", "Content-Type", "--allow_credentials",
            "--rest_max_body_size", "2000",
        ],
        tmp_path_factory.mktemp("strict") / "log",
    )  # fmt: skip
    yield process
    process.stop()


def test_cors_listed_origins_and_credentials(strict_server):
    preflight = call(strict_server, "OPTIONS", "/v2", Origin="http://b.example")
    assert preflight.headers["access-control-allow-origin"] == "http://b.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    assert preflight.headers["access-control-allow-headers"] == "Content-Type"
    assert preflight.headers["vary"] == "Origin"
    other = call(strict_server, "GET", "/v2", Origin="http://evil.example")
    assert other.status == 200 and "access-control-allow-origin" not in other.headers


def test_body_size_limit(strict_server):
    small = call(strict_server, "POST", "/v2/models/dummy/infer", infer_body([DUMMY_INPUT]))
    assert small.status == 200
    big = infer_body([{**DUMMY_INPUT, "shape": [1, 1000], "data": [0.5] * 1000}])
    reply = call(strict_server, "POST", "/v2/models/dummy/infer", big)
    assert reply.status == 413
    assert reply.error.startswith("Request body exceeds the allowed size - ")
    assert call(strict_server, "POST", "/v2/models/dummy/infer", infer_body([DUMMY_INPUT])).status == 200
