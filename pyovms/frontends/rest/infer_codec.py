"""REST inference bodies <-> core types: KServe v2 JSON (§7.2) and the binary tensor extension (§3.4).

Request: a JSON header, optionally followed by binary tensor data whose JSON length is given by the
`Inference-Header-Content-Length` header. Inputs with `parameters.binary_data_size` take that many bytes from the
binary part, in input order, as raw data (little-endian values, or length-prefixed elements for BYTES); other inputs
carry `data` (nested or flat JSON arrays), converted by numpy in C, never element by element in Python (except
BYTES, whose elements are strings). Values are checked against the datatype: integers for integer types within
their full range (INT64 and UINT64 included), numbers for FP32/FP64, booleans for BOOL, strings for BYTES; FP16
travels only in binary form.

Response: JSON with outputs' `data` as flat arrays, or, for outputs asked for in binary form
(`parameters.binary_data` on a requested output, or the request's `parameters.binary_data_output` for every
output without its own choice), `parameters.binary_data_size` and their bytes after the JSON, in output order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ...errors import ServingError, Status
from ...tensors import datatypes
from ...tensors.messages import InferInput, InferOutput, InferRequest, InferResponse
from ...tensors.shared_memory import REGION

MAX_JSON_DEPTH = 100
_INT32 = (-(1 << 31), (1 << 31) - 1)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[list(b"[{")] = 1
_OPEN[list(b"]}")] = -1
_NUMBER_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}
"""Per datatype kind, the numpy kinds JSON values may arrive as (integers only for integer types)."""


@dataclass(slots=True)
class OutputChoice:
    """Which outputs the client wants, and which of them in binary form."""

    binary: dict[str, bool] = field(default_factory=dict)
    """Requested outputs by name: True for binary form, False for JSON `data`."""
    binary_by_default: bool = False
    """`parameters.binary_data_output`: binary form for outputs without their own choice (all when none listed)."""
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Parameters of the requested outputs that have some besides `binary_data` (shared memory targets)."""

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_by_default)


def json_depth(text: bytes | memoryview) -> int:
    """Deepest nesting of arrays and objects in a JSON text, strings skipped; runs in C (regex, translate, numpy)."""
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return int(np.cumsum(_OPEN[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int64).max())


def parse_json(text: bytes | memoryview) -> Any:
    """Parse a JSON body with OVMS's errors: 412 for invalid JSON, nesting deeper than 100 rejected."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ServingError(Status.JSON_INVALID, f"Error: {exc.msg}. Offset: {exc.pos}") from None
    if isinstance(document, (dict, list)) and json_depth(text) > MAX_JSON_DEPTH:
        raise ServingError(Status.JSON_NESTING_DEPTH_EXCEEDED, f"limit: {MAX_JSON_DEPTH}")
    return document


def parse_infer_request(
    body: bytes, header_length: str | None, model_name: str, model_version: str
) -> tuple[InferRequest, OutputChoice]:
    """The core request and the output choice of a REST inference body."""
    view = memoryview(body)
    if header_length is None:
        json_part, binary = view, view[len(view) :]
    else:
        try:
            length = int(header_length.strip())
        except ValueError:
            length = -1
        if not 0 <= length < 1 << 31:
            raise ServingError(Status.REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID, repr(header_length))
        if length > len(view):
            raise ServingError(
                Status.REST_INFERENCE_HEADER_CONTENT_LENGTH_EXCEEDED, f"header: {length}; body: {len(view)} bytes"
            )
        json_part, binary = view[:length], view[length:]
    document = parse_json(json_part)
    if not isinstance(document, dict):
        raise ServingError(Status.REST_BODY_IS_NOT_AN_OBJECT)
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ServingError(Status.REST_NO_INPUTS_FOUND)
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, "id must be a string")
    parameters = _parameters(document.get("parameters"))
    parsed = _Inputs(binary, header_length is not None, len(inputs))
    request = InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=request_id,
        inputs=[parsed.input(item) for item in inputs],
        parameters=parameters,
    )
    # raw_input_count stays 0: REST inputs may mix binary and JSON data freely, so gRPC's rule that raw buffers
    # come for all inputs or none does not apply.
    choice = _outputs(document.get("outputs"), parameters)
    request.outputs = list(choice.binary)
    request.output_parameters = choice.parameters
    return request, choice


def _parameters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, bool, int)) for v in value.values()):
        raise ServingError(Status.REST_COULD_NOT_PARSE_PARAMETERS)
    return value


def _outputs(value: Any, parameters: dict[str, Any]) -> OutputChoice:
    default = parameters.get("binary_data_output") is True
    choice = OutputChoice(binary_by_default=default)
    if value is None:
        return choice
    if not isinstance(value, list):
        raise ServingError(Status.REST_COULD_NOT_PARSE_OUTPUT, "outputs must be an array")
    for item in value:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise ServingError(Status.REST_COULD_NOT_PARSE_OUTPUT, "each output needs a string name")
        output_parameters = item.get("parameters", {})
        if not isinstance(output_parameters, dict):
            raise ServingError(Status.REST_COULD_NOT_PARSE_OUTPUT, f"parameters of output {name}")
        binary = output_parameters.get("binary_data", default)
        if not isinstance(binary, bool):
            raise ServingError(Status.REST_COULD_NOT_PARSE_OUTPUT, f"binary_data of output {name} must be a boolean")
        choice.binary[name] = binary
        others = {k: v for k, v in output_parameters.items() if k != "binary_data"}
        if others:
            choice.parameters[name] = others
    return choice


class _Inputs:
    """Turns JSON input objects into core inputs, taking binary data from the payload in order."""

    def __init__(self, binary: memoryview, has_binary: bool, count: int) -> None:
        self.binary = binary
        self.has_binary = has_binary
        self.count = count
        self.offset = 0

    def input(self, item: Any) -> InferInput:
        if not isinstance(item, dict):
            raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, "each input must be an object")
        name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, "input name and datatype must be strings")
        where = f"input name: {name}"
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, f"shape must be non-negative integers; {where}")
        parameters = item.get("parameters", {})
        if not isinstance(parameters, dict):
            raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, f"parameters must be an object; {where}")
        size = parameters.get("binary_data_size")
        has_data = "data" in item
        if REGION in parameters:  # the data is in shared memory (read by the core)
            if has_data or size is not None:
                raise ServingError(
                    Status.SHM_REQUEST_INVALID, f"data both in shared memory and in the request; {where}"
                )
            return InferInput(name, datatype, tuple(shape), parameters=parameters)
        if size is not None:
            if type(size) is not int or size < 0:
                raise ServingError(Status.REST_BINARY_DATA_SIZE_PARAMETER_INVALID, where)
            if has_data:
                raise ServingError(Status.REST_CONTENTS_FIELD_NOT_EMPTY, where)
            raw = self._take(size, where)
            return InferInput(name, datatype, tuple(shape), raw=raw, parameters=_input_parameters(parameters))
        if has_data:
            contents = _decode_data(item["data"], datatype, where)
            return InferInput(name, datatype, tuple(shape), contents=contents, parameters=parameters)
        if self.has_binary:
            return InferInput(
                name, datatype, tuple(shape), raw=self._take(self._implicit_size(datatype, shape, where), where)
            )
        raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, f"no data and no binary_data_size; {where}")

    def _implicit_size(self, datatype: str, shape: list[int], where: str) -> int:
        """Binary data without `binary_data_size`: the whole rest for a single BYTES input, else shape x size."""
        if datatype == "BYTES":
            if self.count == 1:
                return len(self.binary) - self.offset
            raise ServingError(Status.REST_BINARY_DATA_SIZE_PARAMETER_INVALID, f"required for BYTES; {where}")
        described = datatypes.DATATYPES.get(datatype)
        if described is None or described.dtype is None:
            raise ServingError(Status.REST_UNSUPPORTED_PRECISION, f"{datatype}; {where}")
        return int(np.prod(shape, dtype=np.int64)) * described.dtype.itemsize

    def _take(self, size: int, where: str) -> memoryview:
        if self.offset + size > len(self.binary):
            raise ServingError(
                Status.REST_BINARY_BUFFER_EXCEEDED,
                f"binary_data_size: {size}; bytes left: {len(self.binary) - self.offset}; {where}",
            )
        chunk = self.binary[self.offset : self.offset + size]
        self.offset += size
        return chunk


def _input_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k != "binary_data_size"}


def _decode_data(data: Any, datatype: str, where: str) -> np.ndarray:
    """JSON `data` (nested or flat) as a flat array of the datatype's dtype (object array of bytes for BYTES)."""
    if datatype == "BYTES":
        items = _flatten(data)
        if not all(isinstance(item, str) for item in items):
            raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, f"BYTES data must be strings; {where}")
        strings = np.empty(len(items), dtype=object)
        strings[:] = [item.encode() for item in items]
        return strings
    described = datatypes.DATATYPES.get(datatype)
    if described is None:
        raise ServingError(Status.REST_UNSUPPORTED_PRECISION, f"{datatype}; {where}")
    if described.dtype is None or described.contents_field is None:  # FP16: binary form only
        raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, f"{datatype} data must be sent in binary form; {where}")
    target = described.dtype
    try:
        values = np.asarray(data)
        if values.dtype == object:
            raise ValueError("not a regular array")
    except ValueError:  # ragged nesting, or integers numpy cannot type alone: the rare slow path
        values = _irregular(_flatten(data), target, datatype, where)
    else:
        if target.kind in "iu" and values.dtype.kind == "f":  # floats, or UINT64 beyond int64 typed as float64
            values = _irregular(_flatten(data), target, datatype, where)
    values = values.reshape(-1)
    if values.size and values.dtype.kind not in _NUMBER_KINDS[target.kind]:
        raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, f"{datatype} data must be {_expected(target)}; {where}")
    if target.kind in "iu" and values.size:
        limits = np.iinfo(target)
        if values.min() < limits.min or values.max() > limits.max:
            raise ServingError(
                Status.REST_COULD_NOT_PARSE_INPUT, f"{datatype} values must be in [{limits.min}, {limits.max}]; {where}"
            )
    return values.astype(target, copy=False)


def _irregular(flat: list[Any], target: np.dtype, datatype: str, where: str) -> np.ndarray:
    """Flattened values numpy could not type exactly (ragged nesting; UINT64 values above the int64 range next to
    small ones, which numpy would make float64): integers are converted exactly, other values as numpy types them."""
    if target.kind not in "iu":
        values = np.asarray(flat)
        if values.dtype == object:
            raise ServingError(
                Status.REST_COULD_NOT_PARSE_INPUT, f"{datatype} data must be {_expected(target)}; {where}"
            )
        return values
    if not all(type(v) is int for v in flat):
        raise ServingError(Status.REST_COULD_NOT_PARSE_INPUT, f"{datatype} data must be {_expected(target)}; {where}")
    try:
        return np.array(flat, dtype=target)
    except OverflowError:
        limits = np.iinfo(target)
        raise ServingError(
            Status.REST_COULD_NOT_PARSE_INPUT, f"{datatype} values must be in [{limits.min}, {limits.max}]; {where}"
        ) from None


def _expected(dtype: np.dtype) -> str:
    return {"f": "numbers", "i": "integers", "u": "integers", "b": "booleans"}[dtype.kind]


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def encode_infer_response(response: InferResponse, choice: OutputChoice) -> tuple[bytes, int | None]:
    """The response body and, when some outputs are binary, the length of its JSON part."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in response.outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
        if output.parameters:  # written to shared memory: where, and no data
            entry["parameters"] = output.parameters
        elif choice.is_binary(output.name):
            entry["parameters"] = {"binary_data_size": len(output.raw)}
            chunks.append(output.raw)
        else:
            entry["data"] = _json_data(output)
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": response.model_name}
    if response.id:
        document["id"] = response.id
    document["model_version"] = response.model_version
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"] = outputs
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _json_data(output: InferOutput) -> Any:
    if output.datatype == "FP16":
        raise ServingError(
            Status.REST_UNSUPPORTED_PRECISION,
            f"FP16 output {output.name} is sent in binary form only: request it with parameters.binary_data",
        )
    if output.datatype == "BYTES":
        return [item.decode("utf-8", "replace") for item in datatypes.split_bytes(output.raw) or []]
    return output.as_numpy().reshape(-1)
