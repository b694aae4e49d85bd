"""OVMS status -> HTTP status code, the one table the REST front end uses.

Codes follow OVMS's REST map (404 for every lookup failure, including versions still loading; 406 for a wrong
method; 412 for configuration-type failures; 503 when the server is not ready). Where OVMS answers a client's
mistake with 500 (nesting too deep, malformed binary headers, data both inline and binary, unimplemented
features), pyovms answers 400, 413 or 501 instead: 500 is kept for server faults.
"""

from __future__ import annotations

from ..errors import Status

_S = Status

HTTP_CODES: dict[Status, int] = {
    _S.MODEL_NAME_MISSING: 404,
    _S.MODEL_VERSION_MISSING: 404,
    _S.MODEL_VERSION_NOT_LOADED_ANYMORE: 404,
    _S.MODEL_VERSION_NOT_LOADED_YET: 404,
    _S.MODEL_VERSION_INVALID_FORMAT: 400,
    _S.INVALID_NO_OF_INPUTS: 400,
    _S.INVALID_MISSING_INPUT: 400,
    _S.INVALID_MISSING_OUTPUT: 400,
    _S.INVALID_NO_OF_SHAPE_DIMENSIONS: 400,
    _S.INVALID_BATCH_SIZE: 400,
    _S.INVALID_SHAPE: 400,
    _S.INVALID_PRECISION: 400,
    _S.INVALID_VALUE_COUNT: 400,
    _S.INVALID_CONTENT_SIZE: 400,
    _S.INVALID_MESSAGE_STRUCTURE: 400,
    _S.INVALID_INPUT_FORMAT: 400,
    _S.INVALID_STRING_MAX_SIZE_EXCEEDED: 400,
    _S.REQUEST_UNPARSABLE: 400,
    _S.PATH_INVALID: 400,
    _S.REST_INVALID_URL: 400,
    _S.REST_UNSUPPORTED_METHOD: 406,
    _S.REST_BODY_IS_NOT_AN_OBJECT: 400,
    _S.REST_NO_INPUTS_FOUND: 400,
    _S.REST_COULD_NOT_PARSE_INPUT: 400,
    _S.REST_COULD_NOT_PARSE_OUTPUT: 400,
    _S.REST_COULD_NOT_PARSE_PARAMETERS: 400,
    _S.REST_UNSUPPORTED_PRECISION: 400,
    _S.REST_BINARY_DATA_SIZE_PARAMETER_INVALID: 400,
    _S.REST_BINARY_BUFFER_EXCEEDED: 400,
    _S.REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID: 400,
    _S.REST_INFERENCE_HEADER_CONTENT_LENGTH_EXCEEDED: 400,
    _S.REST_CONTENTS_FIELD_NOT_EMPTY: 400,
    _S.REST_BODY_TOO_LARGE: 413,
    _S.JSON_NESTING_DEPTH_EXCEEDED: 400,
    _S.JSON_INVALID: 412,
    _S.RESHAPE_ERROR: 412,
    _S.CANNOT_COMPILE_MODEL_INTO_TARGET_DEVICE: 412,
    _S.SERVER_NOT_READY: 503,
    _S.NOT_IMPLEMENTED: 501,
    _S.OV_INTERNAL_INFERENCE_ERROR: 500,
    _S.INTERNAL_ERROR: 500,
    _S.FILE_INVALID: 500,
    _S.NO_MODEL_VERSION_AVAILABLE: 500,
    _S.SHAPE_WRONG_FORMAT: 500,
    _S.LAYOUT_WRONG_FORMAT: 500,
    _S.MODEL_VERSION_POLICY_WRONG_FORMAT: 500,
    _S.NETWORK_NOT_LOADED: 500,
}


def http_code(status: Status) -> int:
    """The HTTP status for an OVMS status (500 for any status missing from the table)."""
    return HTTP_CODES.get(status, 500)
