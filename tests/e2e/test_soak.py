"""A short soak in CI: 100 gRPC streams on a Python graph plus unary gRPC and REST clients for a few seconds;
every answer checked, none fails, and the server's memory does not grow. The long run is `python -m bench.soak`
(docs/reliability.md)."""

from __future__ import annotations

from bench.soak import soak, write_repository

from ..support.server_process import ServerProcess


def test_short_soak_has_no_errors_and_flat_memory(tmp_path):
    config = write_repository(tmp_path)
    server = ServerProcess(["--config_path", str(config)], tmp_path / "log")
    try:
        args = (server.address, server.rest_address, server.process.pid)
        result = soak(*args, seconds=8, streams=100, unary=2, rest=4, processes=2, settle=2)
    finally:
        server.stop()
    print(result.table())
    assert result.errors == []
    assert len(result.kinds["gRPC streams"].latencies) > 1000
    assert len(result.kinds["REST"].latencies) > 100
    assert len(result.kinds["gRPC unary"].latencies) > 10
    assert result.growth < 0.05
