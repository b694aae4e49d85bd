"""TLS and mutual TLS on gRPC and REST, with a CA, server and client certificates made here (cryptography)."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ..support import models
from ..support.server_process import ServerProcess, run_cli


def _certificate(subject: str, issuer_key, issuer_name, key, ca: bool = False, ip: str | None = None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, key, certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.with_suffix(".pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyovms test CA")])
    ca = _certificate("pyovms test CA", ca_key, ca_name, ca_key, ca=True)
    _write(root / "ca", ca_key, ca)
    for name, ip in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(root / name, key, _certificate(name, ca_key, ca_name, key, ip=ip))
    return root


def _start(tmp_path: Path, pki: Path, mutual: bool) -> ServerProcess:
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    args = ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"),
            "--tls_cert", str(pki / "server.pem"), "--tls_key", str(pki / "server.key")]  # fmt: skip
    if mutual:
        args += ["--tls_client_ca", str(pki / "ca.pem")]
    process = ServerProcess(args, tmp_path / "log", wait_ready=False)
    deadline = time.monotonic() + 60
    while "Server ready" not in process.log():
        assert process.process.poll() is None and time.monotonic() < deadline, process.log()
        time.sleep(0.1)
    return process


def _credentials(pki: Path, with_client: bool) -> grpc.ChannelCredentials:
    client = {}
    if with_client:
        client = {
            "private_key": (pki / "client.key").read_bytes(),
            "certificate_chain": (pki / "client.pem").read_bytes(),
        }
    return grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes(), **client)


def _infer(address: str, credentials: grpc.ChannelCredentials) -> np.ndarray:
    request = service_pb2.ModelInferRequest(model_name="dummy")
    request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.zeros((1, 10), dtype=np.float32).tobytes())
    with grpc.secure_channel(address, credentials) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    return np.frombuffer(response.raw_output_contents[0], dtype=np.float32)


def _https(process: ServerProcess, pki: Path, with_client: bool) -> int:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_client:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    connection = http.client.HTTPSConnection("127.0.0.1", process.rest_port, context=context, timeout=10)
    try:
        connection.request("GET", "/v2/health/ready")
        return connection.getresponse().status
    finally:
        connection.close()


def test_tls(tmp_path, pki):
    process = _start(tmp_path, pki, mutual=False)
    try:
        np.testing.assert_array_equal(_infer(process.address, _credentials(pki, False)), np.ones(10))
        assert _https(process, pki, False) == 200
        assert "Started gRPC server on port" in process.log() and "with TLS" in process.log()
        plain = grpc.insecure_channel(process.address)
        with plain, pytest.raises(grpc.RpcError) as info:  # a plain-text client gets no answer
            service_pb2_grpc.GRPCInferenceServiceStub(plain).ServerLive(service_pb2.ServerLiveRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        process.stop()


def test_mutual_tls_requires_a_client_certificate(tmp_path, pki):
    process = _start(tmp_path, pki, mutual=True)
    try:
        np.testing.assert_array_equal(_infer(process.address, _credentials(pki, True)), np.ones(10))
        assert _https(process, pki, True) == 200
        with pytest.raises(grpc.RpcError) as info:
            _infer(process.address, _credentials(pki, False))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _https(process, pki, False)
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls_cert", "/nonexistent.pem"], "tls_cert and tls_key must be given together"),
        (
            ["--tls_cert", "/nonexistent.pem", "--tls_key", "/nonexistent.key"],
            "tls_cert: no such file: /nonexistent.pem",
        ),
        (["--tls_client_ca", "/ca.pem"], "tls_client_ca needs tls_cert and tls_key"),
    ],
)
def test_tls_flag_errors(tmp_path, flags, message):
    result = run_cli("--model_name", "m", "--model_path", str(tmp_path), "--port", "9000", *flags)
    assert result.returncode == 64
    assert message in result.stderr
