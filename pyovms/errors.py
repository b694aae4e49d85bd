"""The one error type that leaves the core, and the OVMS status codes with their base messages.

Every failure is a `ServingError` carrying a `Status` (the OVMS status name and its fixed base message) and
optional details. On the wire it reads `"<base message> - <details>"`, the form OVMS clients match on. Front
ends translate the status into their own codes (`pyovms.frontends.grpc.status` for gRPC); the core never imports a
wire library.

Server paths are taken out of client-facing text here too (`redact_paths`). Load failures carry the paths the loader
saw (`/srv/models/resnet/1/model.xml: ...`): the log keeps them whole, but a client learns nothing of the server's file
system from an answer. A path under the model repository becomes relative to it (`resnet/1/model.xml`); any other
absolute path keeps only its last part (`.../model.xml`). URLs (`s3://bucket/path`) are left as they are: the
client's own configuration names them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from pathlib import Path


class Status(enum.Enum):
    """OVMS status codes used by pyovms, each with the base message OVMS sends."""

    # Servable lookup and versions
    MODEL_NAME_MISSING = "Model with requested name is not found"
    MODEL_VERSION_MISSING = "Model with requested version is not found"
    MODEL_VERSION_NOT_LOADED_ANYMORE = "Model with requested version is retired"
    MODEL_VERSION_NOT_LOADED_YET = "Model with requested version is not loaded yet"
    MODEL_VERSION_INVALID_FORMAT = "invalid model version format in request"
    # Request validation
    INVALID_NO_OF_INPUTS = "Invalid number of inputs"
    INVALID_MISSING_INPUT = "Missing input with specific name"
    INVALID_MISSING_OUTPUT = "Missing output with specific name"
    INVALID_NO_OF_SHAPE_DIMENSIONS = "Invalid number of shape dimensions"
    INVALID_BATCH_SIZE = "Invalid input batch size"
    INVALID_SHAPE = "Invalid input shape"
    INVALID_PRECISION = "Invalid input precision"
    INVALID_VALUE_COUNT = "Invalid number of values in tensor proto container"
    INVALID_CONTENT_SIZE = "Invalid content size of tensor proto"
    INVALID_MESSAGE_STRUCTURE = (
        "Passing buffers both in ModelInferRequest::InferInputTensor::contents and in "
        "ModelInferRequest::raw_input_contents is not allowed"
    )
    INVALID_INPUT_FORMAT = "Inputs inside buffer does not match expected format."
    INVALID_STRING_MAX_SIZE_EXCEEDED = "Maximum 2D array after string conversion exceeded 1GB"
    REQUEST_UNPARSABLE = "Request could not be parsed"
    UNSUPPORTED_LAYOUT = "Received binary image input but resource not configured to accept NHWC layout"
    INVALID_NO_OF_CHANNELS = "Invalid number of channels in binary input"
    BINARY_IMAGES_RESOLUTION_MISMATCH = "Binary input images for this endpoint are required to have the same resolution"
    BYTES_CONTENTS_EMPTY = "Bytes contents is empty"
    IMAGE_PARSING_FAILED = "Image parsing failed"
    NOT_IMPLEMENTED = "Functionality not implemented"
    # REST front end
    REST_INVALID_URL = "Invalid request URL"
    REST_UNSUPPORTED_METHOD = "Unsupported method"
    REST_BODY_IS_NOT_AN_OBJECT = "Request body should be JSON object"
    REST_NO_INPUTS_FOUND = "Invalid JSON structure, missing inputs"
    REST_COULD_NOT_PARSE_INPUT = "Could not parse input content. Not valid ndarray detected"
    REST_COULD_NOT_PARSE_OUTPUT = "Could not parse output content."
    REST_COULD_NOT_PARSE_PARAMETERS = "Could not parse request parameters"
    REST_UNSUPPORTED_PRECISION = "Could not parse input content. Unsupported data precision detected"
    REST_BINARY_DATA_SIZE_PARAMETER_INVALID = "binary_data_size parameter is invalid and cannot be parsed"
    REST_BINARY_BUFFER_EXCEEDED = "Received buffer size is smaller than binary_data_size parameter indicates"
    REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID = (
        "Inference-Header-Content-Length header is invalid and couldn't be parsed"
    )
    REST_INFERENCE_HEADER_CONTENT_LENGTH_EXCEEDED = (
        "Inference-Header-Content-Length header exceeds actual payload length"
    )
    REST_CONTENTS_FIELD_NOT_EMPTY = "Request contains values both in binary data and in content value"
    REST_BODY_TOO_LARGE = "Request body exceeds the allowed size"
    JSON_NESTING_DEPTH_EXCEEDED = "JSON nesting depth exceeds the allowed limit"
    SERVER_NOT_READY = "Server is not ready"
    CONFIG_RELOAD_FAILED = "Reloading config file failed. Check server logs for more info."
    INVALID_METRICS_LIST = "Invalid name in metrics_list"
    # System shared memory extension
    SHM_NOT_ENABLED = "System shared memory is not enabled"
    SHM_REQUEST_INVALID = "Invalid shared memory request"
    SHM_REGION_KEY_MISSING = "Unable to open shared memory region"
    SHM_REGION_EXISTS = "Shared memory region is already registered"
    SHM_REGION_MISSING = "Unable to find shared memory region"
    SHM_REGION_OUT_OF_BOUNDS = "Shared memory access out of bounds"
    SHM_LIMIT_EXCEEDED = "Shared memory registration limit reached"
    CUDA_SHM_NOT_SERVED = "CUDA shared memory is not served"
    CUDA_SHM_REGION_MISSING = "Unable to find cuda shared memory region"
    # Repository extension (explicit loads and unloads)
    REPOSITORY_REQUEST_INVALID = "Invalid model repository request"
    REPOSITORY_LOAD_FAILED = "Model could not be loaded"
    MODEL_CONTROL_NOT_ENABLED = "Model control is not enabled"
    LOAD_OUTSIDE_REPOSITORY = "Model path is outside the model repository"
    # Pipelines
    PIPELINE_DEFINITION_NAME_MISSING = "Pipeline with requested name is not found"
    PIPELINE_DEFINITION_NOT_LOADED_YET = "Pipeline is not loaded yet"
    PIPELINE_DEFINITION_NOT_LOADED_ANYMORE = "Pipeline is retired"
    PIPELINE_NAME_OCCUPIED = "Pipeline has the same name as model"
    PIPELINE_NODE_NAME_DUPLICATE = "Pipeline definition has multiple nodes with the same name"
    PIPELINE_MULTIPLE_ENTRY_NODES = "Pipeline definition has multiple request nodes"
    PIPELINE_MULTIPLE_EXIT_NODES = "Pipeline definition has multiple response nodes"
    PIPELINE_NODE_REFERING_TO_MISSING_MODEL = "Pipeline definition has reference to missing model"
    PIPELINE_NODE_REFERING_TO_MISSING_MODEL_OUTPUT = "Pipeline definition has reference to missing model output"
    PIPELINE_NODE_REFERING_TO_MISSING_NODE = "Pipeline definition has reference to missing node"
    PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE = "Pipeline definition has reference to missing data source"
    PIPELINE_CONNECTION_TO_MISSING_MODEL_INPUT = "Pipeline definition has connection to non existing model input"
    PIPELINE_MULTIPLE_CONNECTIONS_TO_INPUT = (
        "Pipeline definition has multiple connections to the same input of underlying model"
    )
    PIPELINE_NOT_ALL_INPUTS_CONNECTED = (
        "Pipeline definition does not have connections for all inputs of underlying models"
    )
    PIPELINE_CONNECTION_FROM_RESPONSE = "Pipeline definition has response node used as dependency node"
    PIPELINE_CYCLE_FOUND = "Pipeline definition contains a cycle"
    PIPELINE_CONTAINS_UNCONNECTED_NODES = "Pipeline definition has unconnected nodes"
    PIPELINE_INPUT_NOT_CONSUMED = "Pipeline input is not connected to any node"
    PIPELINE_INPUTS_AMBIGUOUS_METADATA = (
        "Multiple nodes connected to the same pipeline input require different tensor metadata"
    )
    PIPELINE_TENSOR_MISMATCH = "Connected tensors differ in shape or precision"
    PIPELINE_INCORRECT_LIBRARY = "Pipeline refers to incorrect library"
    PIPELINE_GATHER_FROM_ENTRY = "Gathering from entry node is not allowed"
    PIPELINE_GATHER_NODE_MISSING = "Gather node refers to not existing node"
    PIPELINE_GATHER_NOT_DEMULTIPLEXER = "Gather node refers to node that isn't demultiplexer"
    PIPELINE_DEMUX_GATHER_NOT_LIFO = "Demultiplexer and gather nodes are not in LIFO order"
    PIPELINE_NOT_ENOUGH_DIMENSIONS_TO_DEMULTIPLY = "Pipeline has not enough shape dimensions to demultiply"
    PIPELINE_DEMULTIPLY_COUNT_MISMATCH = "Demultiplication count does not match tensor first dimension"
    PIPELINE_DEMULTIPLY_STRINGS = "Demultiplication is not supported for string precision"
    PIPELINE_MULTIPLE_DYNAMIC_DEMULTIPLEXERS = "Pipeline can have only one dynamic demultiplexer"
    PIPELINE_DEMULTIPLEXER_NO_RESULTS = "Pipeline execution aborted due to no content from custom node"
    PIPELINE_WRONG_DIMENSION_SIZE_TO_DEMULTIPLY = "Wrong dimension size. Should match demultiply count"
    PIPELINE_WRONG_NUMBER_OF_DIMENSIONS_TO_DEMULTIPLY = "Wrong number of dimensions in a tensor to be sharded"
    PIPELINE_TOO_LARGE_DIMENSION_SIZE_TO_DEMULTIPLY = "Too large dynamic demultiplication requested."
    PIPELINE_INCONSISTENT_SHARD_DIMENSIONS = "Gathered tensor shards dimensions are different"
    NODE_LIBRARY_EXECUTION_FAILED = "Custom node failed during execution"
    NODE_LIBRARY_MISSING_OUTPUT = "Custom node output is missing"
    NODE_LIBRARY_OUTPUT_INVALID = "Custom node output is invalid"
    NODE_LIBRARY_LOAD_FAILED_OPEN = "Custom node library failed to open"
    NODE_LIBRARY_LOAD_FAILED_SYM = "Custom node library failed to load symbol"
    NODE_LIBRARY_INITIALIZE_FAILED = "Failure during custom node library initialization"
    NODE_LIBRARY_METADATA_FAILED = "Custom node failed on metadata call"
    NODE_LIBRARY_OUTPUTS_CORRUPTED = "Custom node library has returned corrupted outputs handle"
    NODE_LIBRARY_OUTPUTS_CORRUPTED_COUNT = "Custom node library has produced corrupted number of outputs"
    NODE_LIBRARY_INVALID_PRECISION = "Custom node has produced tensor with unspecified precision"
    NODE_LIBRARY_INVALID_SHAPE = "Custom node has produced tensor with not matching shape"
    NODE_LIBRARY_INVALID_CONTENT_SIZE = "Custom node output has invalid content size"
    NODE_LIBRARY_OUTPUT_MISSING_NAME = "Custom node output is missing name"
    # Graphs (MediaPipe-style graph.pbtxt) and streaming
    MEDIAPIPE_DEFINITION_NAME_MISSING = "Mediapipe graph definition with requested name is not found"
    MEDIAPIPE_DEFINITION_NOT_LOADED_YET = "Mediapipe is not loaded yet"
    MEDIAPIPE_DEFINITION_NOT_LOADED_ANYMORE = "Mediapipe is retired"
    MEDIAPIPE_GRAPH_NAME_OCCUPIED = "Given mediapipe graph name is already occupied"
    MEDIAPIPE_GRAPH_CONFIG_FILE_INVALID = "Failed to read protobuf graph configuration file"
    MEDIAPIPE_GRAPH_INITIALIZATION_ERROR = "Failed to initialize mediapipe graph"
    MEDIAPIPE_GRAPH_START_ERROR = "Failed to start mediapipe graph"
    MEDIAPIPE_GRAPH_ADD_PACKET_INPUT_STREAM = "Failed to add packet to mediapipe graph input stream"
    MEDIAPIPE_EXECUTION_ERROR = "Mediapipe execution failed. MP status"
    MEDIAPIPE_PRECONDITION_FAILED = "Mediapipe graph precondition failed"
    MEDIAPIPE_INVALID_TIMESTAMP = "Malformed packet timestamp"
    MEDIAPIPE_INCORRECT_SERVABLE_NAME = "Subsequent request with incorrect servable name"
    MEDIAPIPE_INCORRECT_SERVABLE_VERSION = "Subsequent request with incorrect servable version"
    MEDIAPIPE_NODE_BUSY = "Node is already processing data. Create new stream for another generative execution."
    INVALID_UNEXPECTED_INPUT = "Unexpected input"
    # Execution
    INFER_QUEUE_FULL = "Too many requests are waiting for an infer request"
    OV_INTERNAL_INFERENCE_ERROR = "Internal inference error"
    INTERNAL_ERROR = "Internal server error"
    # Loading and configuration
    PATH_INVALID = "The provided base path is invalid or doesn't exists"
    FILE_INVALID = "File not found or cannot open"
    JSON_INVALID = "The file is not valid json"
    NO_MODEL_VERSION_AVAILABLE = "Not a single model version directory has valid numeric name"
    SHAPE_WRONG_FORMAT = "The provided shape is in wrong format"
    LAYOUT_WRONG_FORMAT = "The provided layout is in wrong format"
    MODEL_VERSION_POLICY_WRONG_FORMAT = "Model version policy is in wrong format"
    RESHAPE_ERROR = "Model could not be reshaped with requested shape"
    CANNOT_COMPILE_MODEL_INTO_TARGET_DEVICE = "Cannot compile model into target device"
    NETWORK_NOT_LOADED = "Error while loading a network"

    @property
    def message(self) -> str:
        """The fixed base message of this status."""
        return self.value


class ServingError(Exception):
    """A failure with an OVMS status; `str()` gives the wire message `<base> - <details>`."""

    def __init__(self, status: Status, details: str = "") -> None:
        self.status = status
        self.details = details
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The full message as clients see it."""
        if self.details:
            return f"{self.status.message} - {self.details}"
        return self.status.message

    def __repr__(self) -> str:
        return f"ServingError({self.status.name}, {self.details!r})"


HIDDEN = "..."
_ABSOLUTE = re.compile(r"(?<![\w:/.~-])/[^\s'\"`,;()\[\]{}<>|]*")


def redact_paths(text: str, roots: Iterable[Path | str] = ()) -> str:
    """`text` with absolute paths made relative to the first of `roots` that holds them, or cut to their last part."""
    prefixes = sorted({p for root in roots for p in _spellings(root)}, key=len, reverse=True)

    def replace(found: re.Match[str]) -> str:
        path = found.group(0)
        for prefix in prefixes:
            if path == prefix:
                return "."
            if path.startswith(prefix + "/"):
                return path[len(prefix) + 1 :]
        last = path.rstrip("/").rpartition("/")[2]
        return f"{HIDDEN}/{last}" if last else HIDDEN

    return _ABSOLUTE.sub(replace, text)


def _spellings(root: Path | str) -> set[str]:
    """A root as given and as resolved (symlinks followed), without a trailing slash."""
    given = str(root).rstrip("/")
    try:
        resolved = str(Path(root).resolve()).rstrip("/")
    except OSError:
        resolved = given
    return {s for s in (given, resolved) if s}
