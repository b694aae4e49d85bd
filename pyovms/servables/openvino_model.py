"""One version of a model run by OpenVINO: read, reshape, layout, names, compile, metadata and inference.

`OpenVinoModel.load` is blocking (reading and compiling take from milliseconds to minutes) and is called
from a worker thread by the repository; `infer` is a coroutine that runs on the event loop.
"""

from __future__ import annotations

import json
import logging
import mmap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor

from ..errors import ServingError, Status
from ..observability.statistics import InferStatistics
from ..repository.config import ModelConfig
from ..scheduling.infer_requests import DEFAULT_POOL_SETTINGS, InferRequestPool, PoolSettings, Shared
from ..tensors import datatypes
from ..tensors.messages import InferOutput, TensorSpec
from ..tensors.shapes import Dim, Shape, parse_shape
from ..tensors.shared_memory import IN_PLACE_MIN_BYTES
from .model_files import find_model_file
from .openvino_core import TOKENIZERS_MISSING_HINT, first_line, is_missing_extension, tokenizers_library

log = logging.getLogger("pyovms.openvino_model")

PLATFORM = "OpenVINO"
MAPPING_FILE = "mapping_config.json"


@dataclass(frozen=True, slots=True)
class _Output:
    """How one output is read out of a finished infer request."""

    name: str
    index: int
    kind: str
    """"number", "string" (OpenVINO string tensor), "string_2d" (U8 rows named *_string) or "placed" (written by
    OpenVINO into a shared memory region)."""
    datatype: str
    dtype: np.dtype | None = None
    """The datatype's little-endian numpy type (numbers): an output array of that type is sent as its bytes."""


class OpenVinoModel:
    """A compiled model version behind the servable interface (`inputs`, `outputs`, `infer`)."""

    platform = PLATFORM

    def __init__(
        self,
        name: str,
        version: int,
        compiled: ov.CompiledModel,
        inputs: dict[str, TensorSpec],
        outputs: dict[str, TensorSpec],
        input_index: dict[str, int],
        output_reads: list[_Output],
        nireq: int,
        pool_settings: PoolSettings = DEFAULT_POOL_SETTINGS,
        loaded_from_cache: bool = False,
    ) -> None:
        self.name = name
        self.loaded_from_cache = loaded_from_cache
        """Whether OpenVINO took the compiled model from the model cache instead of compiling it."""
        self.version = version
        self.inputs = inputs
        self.outputs = outputs
        self._compiled = compiled
        self._input_index = input_index
        self._output_reads = output_reads
        self.statistics = InferStatistics()
        self._pool = InferRequestPool(compiled, nireq, _collect, pool_settings, self.statistics)

    @property
    def nireq(self) -> int:
        return self._pool.size

    @property
    def pool(self) -> InferRequestPool:
        """The infer-request pool (its `waiting` and `active` counts are metrics)."""
        return self._pool

    @property
    def streams(self) -> int:
        """OpenVINO's number of execution streams for this compiled model."""
        return self._property("NUM_STREAMS", 1)

    @property
    def threads(self) -> int:
        """OpenVINO's CPU threads for this compiled model (0 where the device has no such property)."""
        return self._property("INFERENCE_NUM_THREADS", 0)

    def _property(self, name: str, default: int) -> int:
        try:
            return int(self._compiled.get_property(name))
        except Exception:  # a device without the property
            return default

    async def infer(
        self, inputs: Mapping[str, np.ndarray], requested: Sequence[str] = (), into: Mapping[str, np.ndarray] = ()
    ) -> list[InferOutput]:
        """Run one inference; outputs sorted by name, only `requested` ones when any are named. Inputs whose memory is
        a shared memory region are read by OpenVINO in place; outputs named in `into` (arrays over shared memory of
        the output's static shape and type) are written there by OpenVINO and come back with empty `raw`."""
        tensors_in = []
        shared_in = []
        for name, array in inputs.items():
            if _in_shared_memory(array):
                shared_in.append((self._input_index[name], ov.Tensor(array, shared_memory=True)))
            else:
                tensors_in.append((self._input_index[name], _to_openvino(array)))
        reads = self._output_reads
        if requested:
            wanted = set(requested)
            reads = [read for read in reads if read.name in wanted]
        shared = None
        if shared_in or into:
            shared_out = [
                (read.index, ov.Tensor(into[read.name], shared_memory=True)) for read in reads if read.name in into
            ]
            if into:
                reads = [replace(read, kind="placed") if read.name in into else read for read in reads]
            shared = Shared(shared_in, shared_out)
        try:
            return await self._pool.run(tensors_in, reads, shared)
        except ServingError:
            raise
        except Exception as exc:
            log.error("inference of %s version %d failed: %s", self.name, self.version, exc)
            raise ServingError(Status.OV_INTERNAL_INFERENCE_ERROR, first_line(exc)) from exc

    @classmethod
    def load(
        cls,
        core: ov.Core,
        config: ModelConfig,
        version: int,
        path: Path,
        pool_settings: PoolSettings = DEFAULT_POOL_SETTINGS,
        cache_dir: str | None = None,
    ) -> OpenVinoModel:
        """Read and compile the model found at `path` (a version directory or a model file), through the model
        cache `cache_dir` when the model is one OVMS caches (`uses_model_cache`)."""
        model_file = find_model_file(path)
        try:
            model = core.read_model(str(model_file))
        except Exception as exc:
            reason = first_line(exc)
            if is_missing_extension(reason) and tokenizers_library() is None:
                reason = f"{reason}; {TOKENIZERS_MISSING_HINT}"
            raise ServingError(Status.NETWORK_NOT_LOADED, f"{model_file}: {reason}") from exc
        mapping = _read_mapping(path if path.is_dir() else path.parent)
        input_names = [_mapped(port, mapping["inputs"]) for port in model.inputs]
        output_names = [_mapped(port, mapping["outputs"]) for port in model.outputs]
        layouts = _layouts(config.layout, model, input_names, output_names)
        _reshape(model, config, input_names, layouts)
        if layouts:
            model = _apply_layouts(model, layouts)
        properties = {k: v if isinstance(v, bool) else str(v) for k, v in config.plugin_config.items()}
        if cache_dir and uses_model_cache(config):
            properties.setdefault("CACHE_DIR", cache_dir)  # a CACHE_DIR in plugin_config takes precedence
        try:
            compiled = core.compile_model(model, config.target_device, properties)
        except Exception as exc:
            raise ServingError(
                Status.CANNOT_COMPILE_MODEL_INTO_TARGET_DEVICE, f"{config.target_device}: {first_line(exc)}"
            ) from exc
        nireq = config.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        inputs = {name: _spec(name, port) for name, port in zip(input_names, compiled.inputs, strict=True)}
        outputs = {name: _spec(name, port) for name, port in zip(output_names, compiled.outputs, strict=True)}
        reads = [
            _Output(name, index, _output_kind(outputs[name]), outputs[name].datatype, _output_dtype(outputs[name]))
            for index, name in sorted(enumerate(output_names), key=lambda item: item[1])
        ]
        return cls(
            config.name,
            version,
            compiled,
            dict(sorted(inputs.items())),
            dict(sorted(outputs.items())),
            {name: index for index, name in enumerate(input_names)},
            reads,
            nireq,
            pool_settings,
            _loaded_from_cache(compiled),
        )


def uses_model_cache(config: ModelConfig) -> bool:
    """OVMS's rule: every model goes through the model cache but those with `shape` or `batch_size` `auto` (whose
    reloads for new shapes would fill it), unless `allow_cache` is set. (Custom loaders, which OVMS also leaves out,
    are not served.)"""
    shapes = config.shape.values() if isinstance(config.shape, dict) else [config.shape]
    auto = config.batch_size == "auto" or any(shape == "auto" for shape in shapes)
    return config.allow_cache or not auto


def _loaded_from_cache(compiled: ov.CompiledModel) -> bool:
    try:
        return bool(compiled.get_property("LOADED_FROM_CACHE"))
    except Exception:  # a device that does not report it
        return False


def _in_shared_memory(array: np.ndarray) -> bool:
    """Whether `array` is a contiguous view of a shared memory region (a memoryview of an mmap) large enough to be
    worth reading in place (`shared_memory.IN_PLACE_MIN_BYTES`)."""
    if array.nbytes < IN_PLACE_MIN_BYTES or not array.flags.c_contiguous or not array.flags.writeable:
        return False
    if array.dtype == object:
        return False
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def _to_openvino(array: np.ndarray) -> np.ndarray | ov.Tensor:
    """What the infer-request pool takes: numeric arrays as they are (copied into the request's own tensors),
    strings (object arrays of bytes) as string tensors."""
    if array.dtype == object:
        tensor = ov.Tensor(ov.Type.string, ov.Shape(list(array.shape)))
        if array.size:  # OpenVINO fails on empty string data
            tensor.bytes_data = array.reshape(-1).tolist()
        return tensor
    return array


def _collect(request: ov.InferRequest, reads: list[_Output]) -> list[InferOutput]:
    """Copy the outputs out of a finished request (runs on OpenVINO's callback thread)."""
    outputs = []
    for read in reads:
        tensor = request.get_output_tensor(read.index)
        if read.kind == "placed":  # already in its shared memory region
            outputs.append(InferOutput(read.name, read.datatype, tuple(tensor.shape), b""))
        elif read.kind == "string":
            items = tensor.bytes_data.reshape(-1) if tensor.get_size() else []
            outputs.append(InferOutput(read.name, "BYTES", tuple(tensor.shape), datatypes.join_bytes(items)))
        elif read.kind == "string_2d":
            items = datatypes.strings_from_2d(tensor.data)
            outputs.append(InferOutput(read.name, "BYTES", (len(items),), datatypes.join_bytes(items)))
        else:
            data = tensor.data
            if data.dtype == read.dtype:  # the common case, without looking the datatype up again
                outputs.append(InferOutput(read.name, read.datatype, data.shape, data.tobytes()))
            else:
                outputs.append(InferOutput.from_array(read.name, data))
    return outputs


def _read_mapping(directory: Path) -> dict[str, dict[str, str]]:
    mapping: dict[str, dict[str, str]] = {"inputs": {}, "outputs": {}}
    file = directory / MAPPING_FILE
    if not file.is_file():
        return mapping
    try:
        content = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring %s: %s", file, exc)
        return mapping
    for key in ("inputs", "outputs"):
        section = content.get(key, {}) if isinstance(content, dict) else {}
        if isinstance(section, dict):
            mapping[key] = {str(k): str(v) for k, v in section.items()}
    return mapping


def _mapped(port: ov.Output, aliases: Mapping[str, str]) -> str:
    for name in sorted(port.get_names()):
        if name in aliases:
            return aliases[name]
    return port.get_any_name()


def _port_key(name: str, names: list[str], ports: Sequence[ov.Output]) -> int | None:
    """Index of the port a config key refers to: by mapped name or by any OpenVINO tensor name."""
    if name in names:
        return names.index(name)
    for index, port in enumerate(ports):
        if name in port.get_names():
            return index
    return None


def _layouts(
    value: str | dict[str, str] | None, model: ov.Model, inputs: list[str], outputs: list[str]
) -> dict[tuple[str, int], tuple[str, str | None]]:
    """Parsed `layout` setting: (kind, port index) -> (target layout, source layout or None)."""
    if not value:
        return {}
    if isinstance(value, str):
        if len(inputs) != 1:
            raise ServingError(Status.LAYOUT_WRONG_FORMAT, "a single layout needs a single-input model; use a map")
        value = {inputs[0]: value}
    parsed: dict[tuple[str, int], tuple[str, str | None]] = {}
    for name, text in value.items():
        target, _, source = text.partition(":")
        for layout in (target, source):
            if layout:
                try:
                    ov.Layout(layout)
                except RuntimeError as exc:
                    raise ServingError(Status.LAYOUT_WRONG_FORMAT, f"{name}: {text}") from exc
        index = _port_key(name, inputs, model.inputs)
        if index is not None:
            parsed[("input", index)] = (target, source or None)
            continue
        index = _port_key(name, outputs, model.outputs)
        if index is None:
            raise ServingError(Status.LAYOUT_WRONG_FORMAT, f"no tensor named {name}")
        parsed[("output", index)] = (target, source or None)
    return parsed


def _apply_layouts(model: ov.Model, layouts: Mapping[tuple[str, int], tuple[str, str | None]]) -> ov.Model:
    ppp = PrePostProcessor(model)
    for (kind, index), (target, source) in layouts.items():
        info = ppp.input(index) if kind == "input" else ppp.output(index)
        if source is None:
            info.model().set_layout(ov.Layout(target))
        else:
            info.model().set_layout(ov.Layout(source))
            info.tensor().set_layout(ov.Layout(target))
    try:
        return ppp.build()
    except Exception as exc:
        raise ServingError(Status.LAYOUT_WRONG_FORMAT, first_line(exc)) from exc


def _reshape(
    model: ov.Model,
    config: ModelConfig,
    names: list[str],
    layouts: Mapping[tuple[str, int], tuple[str, str | None]],
) -> None:
    """Apply `shape` (or, without it, `batch_size`) in the model's own (source) layout."""
    shapes: dict[int, Shape] = {}
    try:
        if isinstance(config.shape, str) and config.shape != "auto":
            if len(model.inputs) != 1:
                raise ServingError(
                    Status.SHAPE_WRONG_FORMAT, "Anonymous fixed shape is invalid for models with multiple inputs"
                )
            shapes[0] = parse_shape(config.shape)
        elif isinstance(config.shape, dict):
            for name, text in config.shape.items():
                index = _port_key(name, names, model.inputs)
                if index is None:
                    raise ServingError(Status.SHAPE_WRONG_FORMAT, f"Shape from config not found in network: {name}")
                if text != "auto":
                    shapes[index] = parse_shape(text)
        elif config.batch_size and config.batch_size != "0":
            batch = Dim.any() if config.batch_size == "auto" else Dim.parse(config.batch_size)
            for index, port in enumerate(model.inputs):
                current = port.get_partial_shape()
                if current.rank.is_dynamic or len(current) == 0:
                    continue
                position = _batch_position(port, layouts.get(("input", index)), len(current))
                if position is None:
                    continue
                dims = [_from_ov(d) for d in current]
                dims[position] = batch
                shapes[index] = tuple(dims)
    except ValueError as exc:
        raise ServingError(Status.SHAPE_WRONG_FORMAT, str(exc)) from exc
    if not shapes:
        return
    try:
        model.reshape({model.inputs[i]: ov.PartialShape([_to_ov(d) for d in dims]) for i, dims in shapes.items()})
    except Exception as exc:
        raise ServingError(Status.RESHAPE_ERROR, first_line(exc)) from exc


def _batch_position(port: ov.Output, layout: tuple[str, str | None] | None, rank: int) -> int | None:
    """Where N is in the model's own layout (configured source, else the model's annotation); first by default."""
    if layout is not None:
        text = layout[1] or layout[0]
        return _batch_index(ov.Layout(text), rank)
    return _batch_index(ov.layout_helpers.get_layout(port), rank)


def _batch_index(layout: ov.Layout, rank: int) -> int | None:
    if rank == 0:
        return None
    if layout.empty:
        return 0
    if not ov.layout_helpers.has_batch(layout):
        return None
    index = ov.layout_helpers.batch_idx(layout)
    return index % rank


def _from_ov(dim: ov.Dimension) -> Dim:
    if dim.is_static:
        return Dim.static(dim.get_length())
    return Dim(dim.get_min_length(), dim.get_max_length())


def _to_ov(dim: Dim) -> ov.Dimension:
    if dim.is_static:
        return ov.Dimension(dim.lo)
    if dim.is_any:
        return ov.Dimension()
    return ov.Dimension(dim.lo, dim.hi)


def _spec(name: str, port: ov.Output) -> TensorSpec:
    datatype, precision = datatypes.from_openvino(port.get_element_type().get_type_name())
    partial = port.get_partial_shape()
    shape: Shape = tuple(_from_ov(d) for d in partial) if partial.rank.is_static else ()
    if datatype == "BYTES":
        hint: str | None = "string"
    elif datatype == "UINT8" and len(shape) == 2:
        hint = "string_2d"
    elif len(shape) == 4:
        hint = "image"
    else:
        hint = None
    layout = ov.layout_helpers.get_layout(port)
    batch = _batch_index(layout, len(shape))
    return TensorSpec(name, datatype, precision, shape, batch, hint, "" if layout.empty else layout.to_string())


def _output_kind(spec: TensorSpec) -> str:
    if spec.datatype == "BYTES":
        return "string"
    if spec.datatype == "UINT8" and len(spec.shape) == 2 and spec.name.endswith("_string"):
        return "string_2d"
    return "number"


def _output_dtype(spec: TensorSpec) -> np.dtype | None:
    datatype = datatypes.DATATYPES.get(spec.datatype)
    return None if datatype is None else datatype.dtype
