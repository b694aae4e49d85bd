"""What configures one server: the plain dataclasses the `pyovms` command fills from OVMS's flags (`cli.py`) and
that the Python API (`pyovms.serve`) fills from its arguments. Nothing here parses or validates a command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .frontends.access import Group, Restriction, Secret
from .frontends.transport import CorsSettings, TlsSettings
from .repository.config import ModelConfig
from .repository.remote_storage import DEFAULT_TIMEOUT_S as DEFAULT_STORAGE_TIMEOUT_S
from .scheduling.infer_requests import DEFAULT_MAX_QUEUED
from .tensors.shared_memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_REGIONS

DEFAULT_MAX_MESSAGE_SIZE = 1 << 30
"""Largest gRPC message and REST body, in bytes (1 GiB, as in OVMS)."""


@dataclass(slots=True)
class Settings:
    """Everything the command line configures."""

    port: int = 0
    """gRPC port; 0 = no gRPC server."""
    grpc_bind_address: list[str] = field(default_factory=lambda: ["0.0.0.0"])
    rest_port: int = 0
    rest_bind_address: list[str] = field(default_factory=lambda: ["0.0.0.0"])
    grpc_workers: int = 1
    worker_affinity: bool = True
    """With several `--grpc_workers`, pin each worker's event loop to its own share of the cores (`--worker_affinity
    none`: not)."""
    cpu_extension: str | None = None
    """An OpenVINO extension library added to the Core before any model loads (`--cpu_extension`)."""
    inference_threads: int | None = None
    """OpenVINO's CPU threads in this process (INFERENCE_NUM_THREADS of every model whose plugin_config does not set
    it); None: OpenVINO's default, every core. The command sets each `--grpc_workers` process's share of the cores."""
    grpc_max_threads: int | None = None
    grpc_memory_quota: int | None = None
    grpc_channel_arguments: list[tuple[str, Any]] = field(default_factory=list)
    """`--grpc_channel_arguments` parsed into gRPC server options."""
    grpc_max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Largest gRPC message received or sent, in bytes (1 GiB as in OVMS)."""
    rest_workers: int | None = None
    rest_max_body_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Largest REST request body, in bytes (1 GiB as in OVMS)."""
    max_image_decoded_bytes: int = DEFAULT_MAX_MESSAGE_SIZE
    """Largest width x height x channels a binary image's header may declare before it is decoded."""
    cors: CorsSettings = field(default_factory=lambda: CorsSettings())
    tls: TlsSettings | None = None
    """TLS for both gRPC and REST; None: plain connections."""
    file_system_poll_wait_seconds: int = 1
    storage_timeout_s: float = DEFAULT_STORAGE_TIMEOUT_S
    """Connection and read timeout of each request to object storage, and the bound on listing a model's versions."""
    log_level: str = "INFO"
    library_log_level: str = "WARNING"
    """The level of every logger outside pyovms (storage SDKs and other libraries)."""
    log_path: str | None = None
    cache_dir: str | None = None
    allow_client_shm: bool = False
    """Serve the system shared memory extension (local processes may then register memory with the server)."""
    shm_max_regions: int = DEFAULT_MAX_REGIONS
    shm_max_bytes: int = DEFAULT_MAX_BYTES
    """Limits on what clients may register with the system shared memory extension."""
    allow_model_control: bool = False
    """Serve load and unload of the repository extension to clients (the index is served either way)."""
    api_key: Secret | None = None
    """`--api_key_file`'s key: every call but liveness and readiness must send `Authorization: Bearer <key>`."""
    grpc_restrictions: dict[Group, Restriction] = field(default_factory=dict)
    rest_restrictions: dict[Group, Restriction] = field(default_factory=dict)
    """`--grpc_restricted_protocol` and `--rest_restricted_api`: the header and value each restricted group needs."""
    metrics_enable: bool = False
    metrics_list: str = ""
    config_path: str | None = None
    model_repository_path: str | None = None
    """Where explicit loads (the repository extension) find models that nothing configures; default: config.json's
    directory."""
    model: ModelConfig | None = None
    """The single model of single-model mode (`--model_name` with `--model_path`)."""
    demo: bool = False
    inline_threshold_us: int = 300
    """Models whose inferences average less than this many microseconds run inline on the event loop; 0: never."""
    max_queued_requests: int = DEFAULT_MAX_QUEUED
    """Requests that may wait for an infer request of one model version before RESOURCE_EXHAUSTED; 0: no limit."""
    shutdown_grace_s: float = 5.0
    """On SIGTERM/SIGINT, how long requests in flight may take to finish before the servers close."""
    event_loop: str = "auto"
    """"uvloop", "asyncio", or "auto" (uvloop when it is installed)."""
    unused_flags: dict[str, str] = field(default_factory=dict)
    """OVMS flags given that pyovms does not act on, with the reason (warned about at startup)."""
