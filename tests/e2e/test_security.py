"""Safe to expose (docs/security.md), through tritonclient's gRPC and HTTP clients against live servers: model control
closed by default and opened by its flag; every restricted group over both wires (no header, a wrong value, the right
one) while unrestricted groups stay open; the API key on both wires with liveness and readiness open; loads confined
to the repository (absolute paths, `..`, symlinks out, URLs, `file:`), the repository unchanged after each and no
answer naming the repository root; the startup checks of the flags."""

from __future__ import annotations

import http.client
import json
import logging
import os
import shlex
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from pyovms.cli import UsageError, parse_settings
from pyovms.frontends import access

from ..support import models
from ..support.server_process import ServerProcess

X = np.arange(10, dtype=np.float32).reshape(1, 10)
KEY = "test-api-key-4b9c1e"
META, INFER, ADMIN = "meta-value-51c2", "infer-value-7d0e", "admin-value-a93f"
CONFIG_TEXT = "admin-config-value-e6b1"


def build(root: Path) -> Path:
    models.build_dummy(root / "dummy" / "1" / "model.xml")
    config = {"model_config_list": [{"config": {"name": "dummy", "base_path": "dummy"}}]}
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def _infer(client, module, headers=None) -> np.ndarray:
    tensor = module.InferInput("b", [1, 10], "FP32")
    tensor.set_data_from_numpy(X)
    return client.infer("dummy", [tensor], headers=headers).as_numpy("a")


def _rest(address: str, method: str, path: str, headers=None, body: bytes | None = None):
    """(status, JSON body (None when empty, text when not JSON), response headers) of one raw REST call."""
    connection = http.client.HTTPConnection(address, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        document = (json.loads(data) if is_json else data.decode()) if data else None
        return response.status, document, dict(response.getheaders())
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------- model control


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("default")
    server = ServerProcess(["--config_path", str(build(root))], root / "log")
    yield server
    server.stop()


@pytest.mark.parametrize("module", [grpcclient, httpclient], ids=["grpc", "http"])
def test_model_control_is_closed_by_default(default_server, module):
    address = default_server.address if module is grpcclient else default_server.rest_address
    client = module.InferenceServerClient(address)
    try:
        override = json.dumps({"base_path": "/etc"})
        for call in (
            lambda: client.load_model("dummy"),
            lambda: client.load_model("dummy", config=override),
            lambda: client.unload_model("dummy"),
        ):
            error = _error(call)
            assert error.status() == ("StatusCode.FAILED_PRECONDITION" if module is grpcclient else "412")
            assert error.message() == "Model control is not enabled - start the server with --allow_model_control"
        np.testing.assert_array_equal(_infer(client, module), X + 1)  # still served
        index = client.get_model_repository_index()
        rows = index if module is httpclient else [{"name": m.name, "state": m.state} for m in index.models]
        assert [(row["name"], row["state"]) for row in rows] == [("dummy", "READY")]
        metadata = client.get_server_metadata()
        extensions = metadata["extensions"] if module is httpclient else list(metadata.extensions)
        assert extensions == ["model_configuration", "statistics"]
    finally:
        client.close()


def test_model_control_opens_with_its_flag(tmp_path):
    server = ServerProcess(["--config_path", str(build(tmp_path)), "--allow_model_control"], tmp_path / "log")
    grpc_client = grpcclient.InferenceServerClient(server.address)
    http_client = httpclient.InferenceServerClient(server.rest_address)
    try:
        assert "model_repository" in grpc_client.get_server_metadata(as_json=True)["extensions"]
        grpc_client.unload_model("dummy")
        assert [(m.name, m.state) for m in grpc_client.get_model_repository_index().models] == [
            ("dummy", "UNAVAILABLE")
        ]
        http_client.load_model("dummy")
        np.testing.assert_array_equal(_infer(http_client, httpclient), X + 1)
    finally:
        grpc_client.close()
        http_client.close()
        server.stop()


# ---------------------------------------------------------------------------------------------- restricted groups

GROUP_KEYS = {
    "health": ("meta-key", META),
    "metadata": ("meta-key", META),
    "inference": ("infer-key", INFER),
    "shared-memory": ("infer-key", INFER),
    "model-config": ("admin-key", ADMIN),
    "model-repository": ("admin-key", ADMIN),
    "statistics": ("admin-key", ADMIN),
    "config": ("config-key", CONFIG_TEXT),
}


@pytest.fixture(scope="module")
def restricted(tmp_path_factory):
    """Every group restricted on both wires; the inference group's value read from a file."""
    root = tmp_path_factory.mktemp("restricted")
    (root / "infer_value").write_text(INFER + "\n")
    infer = f"inference,shared-memory:infer-key=@{root / 'infer_value'}"
    args = ["--config_path", str(build(root)), "--allow_model_control", "--allow_client_shm"]
    for flag in ("--grpc_restricted_protocol", "--rest_restricted_api"):
        args += [flag, f"health,metadata:meta-key={META}", flag, infer]
        args += [flag, f"model-config,model-repository,statistics,trace:admin-key={ADMIN}"]
    args += ["--rest_restricted_api", f"config,logging:config-key={CONFIG_TEXT}"]
    server = ServerProcess(args, root / "log", ready_metadata=(("triton-grpc-protocol-meta-key", META),))
    yield server
    server.stop()


def _grpc_calls(client, headers):
    return {
        "health": lambda: client.is_model_ready("dummy", headers=headers) and client.is_server_ready(headers=headers),
        "metadata": lambda: client.get_model_metadata("dummy", headers=headers).name == "dummy",
        "inference": lambda: _infer(client, grpcclient, headers).tolist() == (X + 1).tolist(),
        "shared-memory": lambda: list(client.get_system_shared_memory_status(headers=headers).regions) == [],
        "model-config": lambda: client.get_model_config("dummy", headers=headers).config.name == "dummy",
        "model-repository": lambda: (
            [m.name for m in client.get_model_repository_index(headers=headers).models] == ["dummy"]
        ),
        "statistics": lambda: client.get_inference_statistics("dummy", headers=headers).model_stats[0].name == "dummy",
    }


REST_CALLS = {
    "health": ("GET", "/v2/health/ready"),
    "metadata": ("GET", "/v2/models/dummy"),
    "inference": ("POST", "/v2/models/dummy/infer"),
    "shared-memory": ("GET", "/v2/systemsharedmemory/status"),
    "model-config": ("GET", "/v2/models/dummy/config"),
    "model-repository": ("POST", "/v2/repository/index"),
    "statistics": ("GET", "/v2/models/dummy/stats"),
    "config": ("GET", "/v1/config"),
}
INFER_BODY = json.dumps({"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": X.ravel().tolist()}]})


@pytest.mark.parametrize("group", sorted(set(GROUP_KEYS) - {"config"}))
def test_each_restricted_group_over_grpc(restricted, group):
    key, value = GROUP_KEYS[group]
    header = f"triton-grpc-protocol-{key}"
    client = grpcclient.InferenceServerClient(restricted.address)
    try:
        for sent in (None, {header: value + "x"}, {header: value[:-1]}, {f"triton-grpc-protocol-{key}x": value}):
            error = _error(_grpc_calls(client, sent)[group])
            assert error.status() == "StatusCode.UNAVAILABLE"
            assert error.message() == f"This protocol is restricted, expecting header '{header}'"
        assert _grpc_calls(client, {header: value})[group]() is True
    finally:
        client.close()


@pytest.mark.parametrize("group", sorted(GROUP_KEYS))
def test_each_restricted_group_over_rest(restricted, group):
    key, value = GROUP_KEYS[group]
    method, path = REST_CALLS[group]
    body = INFER_BODY.encode() if group == "inference" else None
    for sent in (None, {key: value + "x"}, {key.upper(): "wrong"}):
        status, document, _ = _rest(restricted.rest_address, method, path, sent, body)
        assert (status, document) == (403, {"error": f"This API is restricted, expecting header '{key}'"})
    status, document, _ = _rest(restricted.rest_address, method, path, {key.upper(): value}, body)  # any case
    assert status == 200, document


def test_a_refused_call_changes_nothing(restricted):
    grpc_client = grpcclient.InferenceServerClient(restricted.address)
    http_client = httpclient.InferenceServerClient(restricted.rest_address)
    admin = {"triton-grpc-protocol-admin-key": ADMIN}
    meta = {"triton-grpc-protocol-meta-key": META}
    infer = {"triton-grpc-protocol-infer-key": INFER}
    try:
        _error(lambda: grpc_client.unload_model("dummy"))
        _error(lambda: grpc_client.unload_model("dummy", headers={"triton-grpc-protocol-admin-key": META}))
        _error(lambda: http_client.unload_model("dummy", headers={"infer-key": INFER}))
        _error(lambda: grpc_client.register_system_shared_memory("r", "/pyovms_refused", 64))
        _error(
            lambda: http_client.register_system_shared_memory("r", "/pyovms_refused", 64, headers={"admin-key": ADMIN})
        )
        assert grpc_client.is_model_ready("dummy", headers=meta)
        assert [m.state for m in grpc_client.get_model_repository_index(headers=admin).models] == ["READY"]
        assert list(grpc_client.get_system_shared_memory_status(headers=infer).regions) == []
        request = service_pb2.ModelInferRequest(model_name="dummy")  # a stream is refused before it is read
        with pytest.raises(grpc.RpcError) as info:
            list(restricted.stub.ModelStreamInfer(iter([request]), timeout=30))
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.UNAVAILABLE,
            "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'",
        )
    finally:
        grpc_client.close()
        http_client.close()


def test_grpc_health_checks_follow_the_health_group(restricted):
    with grpc.insecure_channel(restricted.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        metadata = (("triton-grpc-protocol-meta-key", META),)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10, metadata=metadata).status == 1  # SERVING


def test_restriction_values_never_reach_the_log(restricted):
    log = restricted.log()
    assert "REST group config is restricted: header config-key" in log
    assert "gRPC group inference is restricted: header triton-grpc-protocol-infer-key" in log
    for secret in (META, INFER, ADMIN, CONFIG_TEXT):
        assert secret not in log


# ---------------------------------------------------------------------------------------------- API key


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """--api_key_file, and the model-repository group restricted beside it; metrics on."""
    root = tmp_path_factory.mktemp("keyed")
    (root / "key").write_text(KEY + "\n")
    (root / "admin").write_text(ADMIN)
    args = ["--config_path", str(build(root)), "--api_key_file", str(root / "key"), "--metrics_enable"]
    args += ["--grpc_restricted_protocol", f"model-repository:admin-key=@{root / 'admin'}"]
    args += ["--rest_restricted_api", f"model-repository:admin-key=@{root / 'admin'}"]
    server = ServerProcess(args, root / "log")
    yield server
    server.stop()


BEARER = {"authorization": f"Bearer {KEY}"}
MISSING = "Unauthenticated - the API key is missing: send the header 'Authorization: Bearer <key>'"
WRONG = "Unauthenticated - the API key is not valid"


def test_the_api_key_over_grpc(keyed):
    client = grpcclient.InferenceServerClient(keyed.address)
    try:
        assert client.is_server_live() and client.is_server_ready()  # probes need no key
        for headers, message in ((None, MISSING), ({"authorization": "Bearer wrong"}, WRONG),
                                 ({"authorization": KEY}, WRONG), ({"authorization": f"Basic {KEY}"}, WRONG)):  # fmt: skip
            for call in (
                lambda h=headers: client.get_server_metadata(headers=h),
                lambda h=headers: client.is_model_ready("dummy", headers=h),
                lambda h=headers: _infer(client, grpcclient, h),
                lambda h=headers: client.get_model_repository_index(headers=h),
            ):
                error = _error(call)
                assert (error.status(), error.message()) == ("StatusCode.UNAUTHENTICATED", message)
        assert client.get_server_metadata(headers=BEARER).name == "pyovms"
        assert client.get_server_metadata(headers={"authorization": f"bearer  {KEY} "}).name == "pyovms"
        np.testing.assert_array_equal(_infer(client, grpcclient, BEARER), X + 1)  # unrestricted groups are open
        error = _error(lambda: client.get_model_repository_index(headers=BEARER))
        assert error.message() == "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"
        index = client.get_model_repository_index(headers={**BEARER, "triton-grpc-protocol-admin-key": ADMIN})
        assert [m.name for m in index.models] == ["dummy"]
    finally:
        client.close()
    with grpc.insecure_channel(keyed.address) as channel:
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as info:
            list(reflection.ServerReflectionInfo(iter([listing]), timeout=10))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        (answer,) = reflection.ServerReflectionInfo(iter([listing]), timeout=10, metadata=tuple(BEARER.items()))
        assert "inference.GRPCInferenceService" in [s.name for s in answer.list_services_response.service]


def test_the_api_key_over_rest(keyed):
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert _rest(keyed.rest_address, "GET", path)[0] == 200
    for method, path in (("GET", "/v2"), ("GET", "/v2/models/dummy/ready"), ("GET", "/metrics"), ("GET", "/v1/config"),
                         ("POST", "/v2/models/dummy/infer"), ("GET", "/v2/no/such/route")):  # fmt: skip
        status, document, headers = _rest(keyed.rest_address, method, path)
        assert (status, document, headers["WWW-Authenticate"]) == (401, {"error": MISSING}, "Bearer"), path
        status, document, _ = _rest(keyed.rest_address, method, path, {"Authorization": "Bearer nope"})
        assert (status, document) == (401, {"error": WRONG}), path
    for path in ("/v2", "/v2/no/such/route"):  # a browser can read the refusal: CORS headers on it too
        headers = _rest(keyed.rest_address, "GET", path, {"Origin": "http://app.example"})[2]
        assert headers["Access-Control-Allow-Origin"] == "*"
    client = httpclient.InferenceServerClient(keyed.rest_address)
    try:
        np.testing.assert_array_equal(_infer(client, httpclient, {"Authorization": f"Bearer {KEY}"}), X + 1)
        assert _rest(keyed.rest_address, "GET", "/metrics", {"Authorization": f"Bearer {KEY}"})[0] == 200
        error = _error(lambda: client.get_model_repository_index(headers={"Authorization": f"Bearer {KEY}"}))
        assert (error.status(), error.message()) == ("403", "This API is restricted, expecting header 'admin-key'")
    finally:
        client.close()
    assert _rest(keyed.rest_address, "GET", "/v2/no/such/route", {"Authorization": f"Bearer {KEY}"})[0] == 400


def test_the_key_is_never_logged(keyed):
    log = keyed.log()
    assert "API key required on every call but liveness and readiness" in log
    assert KEY not in log and ADMIN not in log


# ---------------------------------------------------------------------------------------------- confined loads


@pytest.fixture(scope="module")
def confined(tmp_path_factory):
    """A repository beside a directory outside it that holds a valid model, and links from inside to outside."""
    base = tmp_path_factory.mktemp("confined")
    root, outside = base / "repository", base / "outside"
    build(root)
    models.build_add_constant(outside / "evil" / "1" / "model.xml", [1, 10], 100.0)
    (root / "link").symlink_to(outside / "evil")  # a model directory that leads out
    (root / "models").mkdir()
    (root / "models" / "escape").symlink_to(outside)
    models.write_broken(root / "broken" / "1")
    server = ServerProcess(["--config_path", str(root / "config.json"), "--allow_model_control"], base / "log")
    server.root, server.outside = root, outside
    yield server
    server.stop()


def _escapes(server) -> dict[str, str]:
    outside = server.outside
    return {
        "absolute": str(outside / "evil"),
        "system": "/etc",
        "dotdot": "../outside/evil",
        "dotdot_inside": "dummy/../../outside/evil",
        "symlink": "link",
        "symlink_parent": "models/escape/evil",
        "home": "~",
        "bucket": "s3://another-bucket/models/evil",
        "gcs": "gs://bucket/m",
    }


@pytest.mark.parametrize("module", [grpcclient, httpclient], ids=["grpc", "http"])
def test_every_escape_is_refused_and_nothing_changes(confined, module):
    address = confined.address if module is grpcclient else confined.rest_address
    client = module.InferenceServerClient(address)
    root = str(confined.root)
    try:
        before = client.get_model_repository_index(as_json=True) if module is grpcclient else None
        changes = confined.log().count("STATUS CHANGE")
        for case, base_path in _escapes(confined).items():
            error = _error(lambda b=base_path: client.load_model("dummy", config=json.dumps({"base_path": b})))
            assert error.status() == ("StatusCode.INVALID_ARGUMENT" if module is grpcclient else "400"), case
            assert error.message() == (
                f"Model path is outside the model repository - name: dummy; base_path: {base_path}"
            ), case
        error = _error(lambda: client.load_model("link"))  # a directory of the root that is a link out
        assert error.message() == (
            "Model path is outside the model repository - name: link is a link out of the model repository"
        )
        error = _error(lambda: client.load_model("dummy", files={"file:1/model.xml": b"<xml/>"}))
        assert "file:1/model.xml are not served" in error.message()
        error = _error(lambda: client.load_model("../outside"))
        assert root not in error.message()
        np.testing.assert_array_equal(_infer(client, module), X + 1)
        if module is grpcclient:
            assert client.get_model_repository_index(as_json=True) == before
        assert confined.log().count("STATUS CHANGE") == changes  # nothing was loaded or read
    finally:
        client.close()


def test_loads_inside_the_repository_still_work(confined):
    client = grpcclient.InferenceServerClient(confined.address)
    try:
        for base_path in ("dummy", str(confined.root / "dummy"), "./models/../dummy"):
            client.load_model("dummy", config=json.dumps({"base_path": base_path, "nireq": 2}))
            np.testing.assert_array_equal(_infer(client, grpcclient), X + 1)
    finally:
        client.close()


def test_no_answer_names_the_repository_root(confined):
    """A load that fails inside the root names the files relative to it; the log keeps the whole path."""
    roots = (str(confined.root), str(confined.root.resolve()))
    grpc_client = grpcclient.InferenceServerClient(confined.address)
    http_client = httpclient.InferenceServerClient(confined.rest_address)
    try:
        for client in (grpc_client, http_client):
            error = _error(lambda c=client: c.load_model("broken"))
            assert error.message().startswith("Model could not be loaded - name: broken; "), error.message()
            assert "broken/1/model.xml" in error.message()
            assert not any(root in error.message() for root in roots)
            error = _error(lambda c=client: c.load_model("nothing_here"))
            assert error.message() == (
                "Model with requested name is not found - name: nothing_here; no such directory in the model repository"
            )
        index = json.dumps(http_client.get_model_repository_index())
        assert "broken/1/model.xml" in index and not any(root in index for root in roots)
        index = str(grpc_client.get_model_repository_index())
        assert "broken/1/model.xml" in index and not any(root in index for root in roots)
    finally:
        grpc_client.close()
        http_client.close()
    assert str(confined.root / "broken" / "1" / "model.xml") in confined.log()


# ---------------------------------------------------------------------------------------------- flags


def _settings(*args: str):
    return parse_settings(["--model_name", "m", "--model_path", "/nonexistent/m", "--port", "9000", *args])


def test_restrictions_parse_with_triton_spellings_and_hide_their_values(tmp_path):
    (tmp_path / "value").write_text("from-a-file\n")
    settings = _settings(
        "--grpc-restricted-protocol", "model-repository,trace,logging:Admin-Key=s3cr3t",
        "--http-restricted-api", f"inference:k=@{tmp_path / 'value'}",
        "--rest_restricted_api", "config:other=a=b",
    )  # fmt: skip
    restriction = settings.grpc_restrictions[access.Group.MODEL_REPOSITORY]
    assert restriction.header == "triton-grpc-protocol-admin-key"
    assert restriction.value.matches("s3cr3t") and not restriction.value.matches("s3cr3")
    assert set(settings.grpc_restrictions) == {access.Group.MODEL_REPOSITORY}  # trace and logging: nothing to restrict
    assert settings.rest_restrictions[access.Group.INFERENCE].value.matches("from-a-file")
    assert settings.rest_restrictions[access.Group.CONFIG].value.matches("a=b")
    assert "s3cr3t" not in repr(settings) and "from-a-file" not in repr(settings)


def test_the_api_key_file(tmp_path):
    (tmp_path / "key").write_text("  the-key  \nsecond line ignored\n")
    settings = _settings("--api_key_file", str(tmp_path / "key"))
    assert settings.api_key is not None and settings.api_key.matches("the-key")
    assert "the-key" not in repr(settings)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match=r"api_key_file: .* holds no key"):
        _settings("--api_key_file", str(tmp_path / "empty"))


def test_flags_without_effect_are_warned_about_once(tmp_path, caplog):
    from pyovms.server import _warn_not_served

    settings = _settings(
        "--mean", "[1,2,3]", "--grpc_memory_quota", "1000", "--sequence_cleaner_poll_wait_minutes", "3"
    )
    assert set(settings.unused_flags) == {"mean", "grpc_memory_quota", "sequence_cleaner_poll_wait_minutes"}
    assert _settings().unused_flags == {}  # defaults are not flags given
    with caplog.at_level(logging.WARNING, logger="pyovms"):
        _warn_not_served(settings)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == [
        "--grpc_memory_quota has no effect in pyovms: gRPC's Python server has no memory quota; "
        "--grpc_max_message_size and --max_queued_requests bound what requests hold",
        "--sequence_cleaner_poll_wait_minutes has no effect in pyovms: stateful models are not served",
        "--mean has no effect in pyovms: single-model preprocessing flags are not applied",
    ]


def test_the_api_key_environment_variable_is_named_when_it_is_not_read(caplog, monkeypatch):
    from pyovms.server import _warn_not_served

    monkeypatch.setenv("API_KEY", "from-the-environment")
    with caplog.at_level(logging.WARNING, logger="pyovms"):
        _warn_not_served(_settings())
    assert [r.getMessage() for r in caplog.records] == [
        "The API_KEY environment variable is not read: give the key with --api_key_file to require it"
    ]
    assert os.environ["API_KEY"] not in caplog.text


# ---------------------------------------------------------------------------------------------- docs/security.md

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "security.md").read_text()


def _block(language: str, after: str) -> str:
    start = DOC.index(f"```{language}\n", DOC.index(after)) + len(f"```{language}\n")
    return DOC[start : DOC.index("```", start)]


def test_the_doc_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """The command line (on this test's ports and loopback), then the Python client and the curl lines against it,
    in a directory of their own."""
    monkeypatch.chdir(tmp_path)
    setup, _, command = _block("bash", "## Closing it").partition("pyovms ")
    subprocess.run(["bash", "-c", setup], check=True, timeout=60)
    args = shlex.split(command.replace("\\\n", " "))
    for flag in ("--port", "--rest_port"):  # the test's own free ports instead
        index = args.index(flag)
        del args[index : index + 2]
    server = ServerProcess(args, tmp_path / "log")
    try:
        example = _block("python", "A client with the key")
        exec(example.replace("127.0.0.1:9000", server.address), {})  # as written
        assert capsys.readouterr().out == "dummy\n"
        auth = {"authorization": "Bearer " + (tmp_path / "api.key").read_text().strip()}
        client = grpcclient.InferenceServerClient(server.address)
        admin = {**auth, "triton-grpc-protocol-admin-key": (tmp_path / "admin.value").read_text().strip()}
        states = {m.name: m.state for m in client.get_model_repository_index(headers=admin).models}
        assert states == {"dummy": "UNAVAILABLE", "resnet": "READY"}
        client.close()
        lines = _block("bash", "And over REST").replace("localhost:8000", server.rest_address)
        result = subprocess.run(["bash", "-c", lines], capture_output=True, text=True, timeout=60, check=True)
        first, second, third = result.stdout.split("\n", 2)
        assert first == "200"
        assert second.startswith('{"error":"Unauthenticated - the API key is missing: send the header')
        assert third.strip() == "200"
    finally:
        server.stop()
    for name in ("api.key", "admin.value"):
        assert (tmp_path / name).read_text().strip() not in (tmp_path / "log").read_text()


def test_the_kubernetes_example_is_the_deployed_file_and_starts(tmp_path):
    manifest = (ROOT / "deploy" / "kubernetes" / "api-key.yaml").read_text()
    assert _block("yaml", "## Kubernetes") == manifest
    deployment = yaml.safe_load(manifest)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (tmp_path / "api-key").write_text("k8s-key\n")
    (tmp_path / "admin-value").write_text("k8s-admin")
    args = [arg.replace("/etc/pyovms/", f"{tmp_path}/") for arg in container["args"]]
    settings = parse_settings(args)
    assert settings.api_key is not None and settings.api_key.matches("k8s-key")
    assert settings.rest_restrictions[access.Group.CONFIG].value.matches("k8s-admin")
    assert access.Group.HEALTH not in settings.grpc_restrictions  # the probes below need no header
    assert container["readinessProbe"]["grpc"]["port"] == settings.port
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    secret = next(volume for volume in pod["volumes"] if "secret" in volume)
    assert mounts[secret["name"]] == "/etc/pyovms" and secret["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsUser"]
