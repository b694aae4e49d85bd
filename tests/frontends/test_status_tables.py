"""The error text clients see, and the one table each front end has from statuses to its codes."""

from __future__ import annotations

from pyovms.errors import ServingError, Status
from pyovms.frontends.grpc.status import GRPC_CODES, grpc_code


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
