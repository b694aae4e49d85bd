"""Coverage-guided fuzz targets (atheris, libFuzzer) for the tensor codec and the REST body parser.

  pip install -e '.[fuzz]'
  python fuzz/atheris_targets.py codec -atheris_runs=200000 [corpus_dir]
  python fuzz/atheris_targets.py rest -max_total_time=300 [corpus_dir]

A target fails (and libFuzzer writes the crashing input) on any exception other than `ServingError`, or on a
`ServingError` whose gRPC code would be INTERNAL or UNKNOWN: malformed input must get a client status. The last
results are in docs/reliability.md.
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports():
    from pyovms.errors import ServingError
    from pyovms.frontends.grpc.status import grpc_code
    from pyovms.frontends.rest.infer_codec import parse_infer_request
    from pyovms.servables.graphs import packets
    from pyovms.tensors.messages import InferInput, InferRequest, TensorSpec
    from pyovms.tensors.node_tensor import tensor_from_input
    from pyovms.tensors.shapes import Dim
    from pyovms.tensors.validation import prepare_inputs

import grpc

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES", "BF16", "custom"]  # fmt: skip
SPECS = [
    {"b": TensorSpec("b", "FP32", "FP32", (Dim.static(1), Dim.static(10)), 0)},
    {"b": TensorSpec("b", "FP16", "FP16", (Dim.any(), Dim(1, 8)), 0)},
    {"b": TensorSpec("b", "BYTES", "STRING", (Dim.any(),), 0, bytes_hint="string")},
    {"b": TensorSpec("b", "BYTES", "STRING", (Dim.any(), Dim.any()), 0, bytes_hint="string_2d")},
    {"b": TensorSpec("b", "FP32", "FP32", (Dim.static(1), Dim(1, 64), Dim(1, 64), Dim.static(3)), 0,
                     bytes_hint="image", layout="[N,H,W,C]")},
]  # fmt: skip
KINDS = [packets.OVTENSOR, packets.TENSOR, packets.IMAGE, packets.PY_TENSOR]


def _client_error(call) -> None:
    try:
        call()
    except ServingError as exc:
        if grpc_code(exc.status) in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            raise AssertionError(f"server-side status for a client error: {exc.message}") from exc


def codec(data: bytes) -> None:
    """One input tensor with drawn datatype, shape and raw buffer, through every decoder."""
    fdp = atheris.FuzzedDataProvider(data)
    datatype = fdp.PickValueInList(DATATYPES)
    shape = tuple(fdp.ConsumeIntInRange(-(2**63), 2**63 - 1) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 16)
                  for _ in range(fdp.ConsumeIntInRange(0, 4)))  # fmt: skip
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256))
    tensor = InferInput("b", datatype, shape, raw=raw)
    request = InferRequest("m", inputs=[tensor], raw_input_count=1)
    for specs in SPECS:
        _client_error(lambda specs=specs: _finish(prepare_inputs(specs, request)))
    _client_error(lambda: tensor_from_input(tensor))
    for kind in KINDS:
        _client_error(lambda kind=kind: packets.to_packet(kind, tensor))


def _finish(prepared: dict) -> None:
    """Large string buffers are split later (on a thread in the server); split them here too."""
    for value in prepared.values():
        convert = getattr(value, "convert", None)
        if convert is not None:
            convert()


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> object:
    """A JSON value drawn from the input, nested lists more often than not (tensor data is nested)."""
    choice = fdp.ConsumeIntInRange(0, 7 if depth < 4 else 5)
    if choice == 0:
        return fdp.ConsumeInt(8)
    if choice == 1:
        return fdp.ConsumeRegularFloat()
    if choice == 2:
        return fdp.ConsumeUnicodeNoSurrogates(8)
    if choice == 3:
        return fdp.ConsumeBool()
    if choice == 4:
        return None
    if choice == 5:
        return fdp.ConsumeIntInRange(-3, 300)
    if choice == 6:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    return {fdp.PickValueInList(["binary_data_size", "binary_data", "x"]): _value(fdp, depth + 1)}


def rest(data: bytes) -> None:
    """A REST inference body (a KServe-shaped JSON document drawn from the input, or the raw bytes, plus a binary
    part) through the parser and the validator."""
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        tensors_ = []
        for _ in range(fdp.ConsumeIntInRange(0, 3)):
            tensor: dict[str, object] = {"name": fdp.PickValueInList(["b", "x", ""]),
                                         "datatype": fdp.PickValueInList(DATATYPES)}  # fmt: skip
            if fdp.ConsumeBool():
                tensor["shape"] = [fdp.ConsumeIntInRange(-2, 12) for _ in range(fdp.ConsumeIntInRange(0, 4))]
            if fdp.ConsumeBool():
                tensor["data"] = _value(fdp)
            if fdp.ConsumeBool():
                tensor["parameters"] = {"binary_data_size": _value(fdp)}
            tensors_.append(tensor)
        document: dict[str, object] = {"inputs": tensors_}
        if fdp.ConsumeBool():
            document["outputs"] = _value(fdp)
        if fdp.ConsumeBool():
            document["parameters"] = _value(fdp)
        text = json.dumps(document).encode()
        header = fdp.PickValueInList([None, str(len(text)), str(len(text) + 3), "-1"])
        body = text + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 128))
    else:
        header = fdp.PickValueInList([None, "0", "-1", "x", str(fdp.ConsumeIntInRange(0, 512))])
        body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        request, _ = parse_infer_request(body, header, "m", "")
    except ServingError as exc:
        if grpc_code(exc.status) in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            raise
        return
    for specs in SPECS:
        _client_error(lambda specs=specs: _finish(prepare_inputs(specs, request)))


TARGETS = {"codec": codec, "rest": rest}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [corpus]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
