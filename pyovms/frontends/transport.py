"""How the front ends' ports are exposed: TLS for gRPC and REST, CORS for REST. Filled by the command line and the
Python API (`pyovms.settings.Settings` holds them); read by the gRPC and REST servers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """`--allowed_origins`, `--allowed_methods`, `--allowed_headers` (comma-separated or `*`), `--allow_credentials`."""

    origins: str = "*"
    methods: str = "*"
    headers: str = "*"
    credentials: bool = False


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """`--tls_cert`, `--tls_key` (PEM files) and `--tls_client_ca` (PEM; requires client certificates: mutual TLS)."""

    cert: str
    key: str
    client_ca: str | None = None
