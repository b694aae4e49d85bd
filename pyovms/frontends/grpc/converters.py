"""Protobuf messages <-> core types, one function per direction and message.

Raw input buffers are handed over as the bytes objects protobuf returns (numpy views are taken over them
later, without another copy); typed contents are passed as the protobuf message itself, which has the field
names `pyovms.tensors.messages.TensorContents` expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...generated import grpc_predict_v2_pb2 as pb
from ...observability.statistics import Duration
from ...tensors import datatypes
from ...tensors.messages import (
    InferInput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    RepositoryEntry,
    ServerMetadata,
    StreamError,
    TensorSpec,
    VersionStatistics,
)
from ...tensors.shared_memory import REGION, RegionStatus


def parameters_from_pb(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """`InferParameter` or `ModelRepositoryParameter` values (both are a `parameter_choice` oneof) by key."""
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def parameters_to_pb(values: Mapping[str, Any], target: Any) -> None:
    for key, value in values.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        else:
            target[key].string_param = str(value)


def infer_request_from_pb(message: pb.ModelInferRequest) -> InferRequest:
    raw = message.raw_input_contents
    raw_count = len(raw)
    inputs = []
    next_raw = 0  # raw buffers belong, in order, to the inputs not in shared memory
    for tensor in message.inputs:
        parameters = parameters_from_pb(tensor.parameters) if tensor.parameters else {}
        buffer = None
        if REGION not in parameters and next_raw < raw_count:
            buffer = raw[next_raw]
            next_raw += 1
        inputs.append(
            InferInput(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=tuple(tensor.shape),
                contents=tensor.contents if tensor.HasField("contents") else None,
                raw=buffer,
                parameters=parameters,
            )
        )
    requested = message.outputs  # most requests name none: no comprehensions over an empty field then
    output_parameters = {}
    if requested:
        output_parameters = {o.name: parameters_from_pb(o.parameters) for o in requested if o.parameters}
    return InferRequest(
        model_name=message.model_name,
        model_version=message.model_version,
        id=message.id,
        inputs=inputs,
        outputs=[output.name for output in requested] if requested else [],
        parameters=parameters_from_pb(message.parameters) if message.parameters else {},
        raw_input_count=raw_count,
        output_parameters=output_parameters,
    )


def infer_response_to_pb(response: InferResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    if response.parameters:
        parameters_to_pb(response.parameters, message.parameters)
    tensors, raw = message.outputs, message.raw_output_contents
    for output in response.outputs:  # added in place: half the cost of building the tensors and then the message
        tensor = tensors.add(name=output.name, datatype=output.datatype, shape=output.shape)
        raw.append(output.raw)  # (empty for outputs in shared memory)
        if output.parameters:
            parameters_to_pb(output.parameters, tensor.parameters)
    return message


def stream_item_to_pb(item: InferResponse | StreamError) -> pb.ModelStreamInferResponse:
    """A response, or an in-stream error: its message, with the request's id when it has one (as Triton sends it)."""
    if isinstance(item, StreamError):
        if item.request_id is None:
            return pb.ModelStreamInferResponse(error_message=item.error.message)
        return pb.ModelStreamInferResponse(
            error_message=item.error.message, infer_response=pb.ModelInferResponse(id=item.request_id)
        )
    return pb.ModelStreamInferResponse(infer_response=infer_response_to_pb(item))


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype, shape=spec.metadata_shape)


def model_metadata_to_pb(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[_tensor_metadata(s) for s in metadata.inputs],
        outputs=[_tensor_metadata(s) for s in metadata.outputs],
    )


def server_metadata_to_pb(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name=metadata.name, version=metadata.version, extensions=metadata.extensions)


BACKEND = "openvino"


def _config_datatype(datatype: str) -> int:
    return pb.DataType.Value(datatypes.triton_config_datatype(datatype))


def model_config_to_pb(metadata: ModelMetadata) -> pb.ModelConfigResponse:
    """Triton's ModelConfig for one version: no batching dimension split off (max_batch_size 0), full shapes."""
    return pb.ModelConfigResponse(
        config=pb.ModelConfig(
            name=metadata.name,
            platform=metadata.platform,
            backend=BACKEND,
            max_batch_size=0,
            input=[
                pb.ModelInput(name=s.name, data_type=_config_datatype(s.datatype), dims=s.metadata_shape)
                for s in metadata.inputs
            ],
            output=[
                pb.ModelOutput(name=s.name, data_type=_config_datatype(s.datatype), dims=s.metadata_shape)
                for s in metadata.outputs
            ],
        )
    )


def _duration(duration: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=duration.count, ns=duration.ns)


def model_statistics_to_pb(entries: list[VersionStatistics]) -> pb.ModelStatisticsResponse:
    response = pb.ModelStatisticsResponse()
    for entry in entries:
        stats = entry.statistics
        response.model_stats.add(
            name=entry.name,
            version=entry.version,
            last_inference=stats.last_inference_ms,
            inference_count=stats.inference_count,
            execution_count=stats.execution_count,
            inference_stats=pb.InferStatistics(
                success=_duration(stats.success),
                fail=_duration(stats.fail),
                queue=_duration(stats.queue),
                compute_input=_duration(stats.compute_input),
                compute_infer=_duration(stats.compute_infer),
                compute_output=_duration(stats.compute_output),
            ),
            batch_stats=[
                pb.InferBatchStatistics(
                    batch_size=1,
                    compute_input=_duration(stats.compute_input),
                    compute_infer=_duration(stats.compute_infer),
                    compute_output=_duration(stats.compute_output),
                )
            ]
            if stats.execution_count
            else [],
        )
    return response


def repository_index_to_pb(entries: list[RepositoryEntry]) -> pb.RepositoryIndexResponse:
    response = pb.RepositoryIndexResponse()
    for entry in entries:
        response.models.add(name=entry.name, version=entry.version, state=entry.state, reason=entry.reason)
    return response


def shared_memory_status_to_pb(regions: list[RegionStatus]) -> pb.SystemSharedMemoryStatusResponse:
    response = pb.SystemSharedMemoryStatusResponse()
    for region in regions:
        entry = response.regions[region.name]
        entry.name, entry.key, entry.offset, entry.byte_size = region.name, region.key, region.offset, region.byte_size
    return response
