"""The `pyovms` command: OVMS's flags parsed into `Settings`, validated with OVMS's startup messages.

Flags are written as in OVMS (`--port 9000` or `--port=9000`; boolean flags alone mean true). A bad
combination prints the OVMS message to stderr and exits with status 64 (EX_USAGE).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
from typing import Any

from .frontends import access
from .frontends.transport import CorsSettings, TlsSettings
from .repository.config import ModelConfig
from .scheduling.infer_requests import DEFAULT_MAX_QUEUED
from .settings import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_STORAGE_TIMEOUT_S, Settings
from .tensors.shared_memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_REGIONS
from .version import __version__, protobuf_mismatch
from .workers.cores import available_cores, inference_threads

EX_USAGE = 64
MAX_PORT = 65535
MAX_REST_WORKERS = 10000
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
DEMO_PORT = 9000


NOT_ACTED_ON: dict[str, str] = {
    "grpc_max_threads": "grpc.aio serves calls on the event loop: there is no gRPC thread pool to size",
    "grpc_memory_quota": "gRPC's Python server has no memory quota; --grpc_max_message_size and --max_queued_requests "
    "bound what requests hold",
    "rest_workers": "REST requests are served by the event loop, beside gRPC",
    "sequence_cleaner_poll_wait_minutes": "stateful models are not served",
    "custom_node_resources_cleaner_interval_seconds": "a retired custom node is deinitialized as soon as nothing uses "
    "it, with no periodic cleaner",
    "mean": "single-model preprocessing flags are not applied",
    "scale": "single-model preprocessing flags are not applied",
    "color_format": "single-model preprocessing flags are not applied",
    "precision": "single-model preprocessing flags are not applied",
    "stateful": "stateful models are not served",
    "low_latency_transformation": "stateful models are not served",
    "max_sequence_number": "stateful models are not served",
    "idle_sequence_cleanup": "stateful models are not served",
}
"""OVMS flags accepted so that OVMS command lines start unchanged, which pyovms does not act on, with the reason (the
server warns about each one given). A flag that concerns security is never in this table: it is served or
refused."""


class UsageError(Exception):
    """A flag value or combination OVMS refuses at startup."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {text}")


def _uint(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"negative value: {text}")
    return value


def _workers(text: str) -> int:
    """`--grpc_workers`: a count, or `auto` for one worker per core available to this process."""
    if text == "auto":
        return available_cores()
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Help with each flag's default, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is not None and default is not False and default not in ("", [], argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyovms",
        formatter_class=_HelpFormatter,
        description="pyovms: OpenVINO models over the KServe v2 API, with OpenVINO Model Server's flags.",
        allow_abbrev=False,
    )
    add = parser.add_argument
    flag = {"nargs": "?", "const": True, "default": None, "type": _bool}
    add("--version", action="store_true", help="show the version and exit")
    add(
        "--demo",
        action="store_true",
        help=f"build a demo model repository locally and serve it (gRPC port {DEMO_PORT})",
    )
    server = parser.add_argument_group("server")
    server.add_argument("--port", type=_uint, default=None, help="gRPC server port (0 = off)")
    server.add_argument("--grpc_bind_address", default="0.0.0.0", help="comma-separated addresses for gRPC")
    server.add_argument("--rest_port", type=_uint, default=0, help="REST server port (0 = off)")
    server.add_argument("--rest_bind_address", default="0.0.0.0", help="comma-separated addresses for REST")
    server.add_argument(
        "--grpc_workers",
        type=_workers,
        default=1,
        help="number of gRPC server processes; auto: one per available core (affinity and cgroup quota counted)",
    )
    server.add_argument(
        "--worker_affinity",
        choices=("cores", "none"),
        default="cores",
        help="with several gRPC workers, pin each one's event loop to its own share of the cores (cores) or not (none)",
    )
    server.add_argument("--grpc_max_threads", type=_uint)
    server.add_argument("--grpc_memory_quota", type=_uint)
    server.add_argument("--grpc_channel_arguments", default="", help="k=v,k=v passed to the gRPC server")
    server.add_argument(
        "--grpc_max_message_size", type=_uint, default=DEFAULT_MAX_MESSAGE_SIZE, help="max gRPC message bytes"
    )
    server.add_argument("--rest_workers", type=int)
    server.add_argument(
        "--rest_max_body_size", type=_uint, default=DEFAULT_MAX_MESSAGE_SIZE, help="max REST request body bytes"
    )
    server.add_argument(
        "--max_image_decoded_bytes",
        type=_uint,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="refuse binary images whose header declares more than width x height x channels bytes (1 GiB)",
    )
    server.add_argument(
        "--inline_threshold_us",
        type=_uint,
        default=300,
        help="run models whose inferences average less than this many microseconds inline on the event loop "
        "(saves two thread hops per request; 0 = always asynchronous)",
    )
    server.add_argument(
        "--max_queued_requests",
        type=_uint,
        default=DEFAULT_MAX_QUEUED,
        help="requests that may wait for an infer request of one model version; more are refused with "
        "RESOURCE_EXHAUSTED (REST 429) instead of queueing without limit (0 = no limit)",
    )
    server.add_argument(
        "--event_loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop implementation; auto = uvloop when installed (faster per request), else asyncio's own",
    )
    server.add_argument(
        "--shutdown_grace_seconds",
        type=float,
        default=5.0,
        help="on SIGTERM/SIGINT, let requests in flight finish for this long before closing (readiness turns false "
        "at once)",
    )
    server.add_argument("--file_system_poll_wait_seconds", type=int, default=1, help="config/version poll period")
    server.add_argument(
        "--storage_timeout_seconds",
        type=_positive_float,
        default=DEFAULT_STORAGE_TIMEOUT_S,
        help="object storage: connection and read timeout of each request, and the bound on listing a model's "
        "versions; a model whose storage does not answer in time is marked failed and tried again later",
    )
    server.add_argument("--sequence_cleaner_poll_wait_minutes", type=_uint)
    server.add_argument("--custom_node_resources_cleaner_interval_seconds", type=_uint)
    server.add_argument("--log_level", default="INFO", help="TRACE, DEBUG, INFO, WARNING or ERROR")
    server.add_argument(
        "--library_log_level",
        default="WARNING",
        help="level of the libraries' loggers (storage SDKs and others): TRACE, DEBUG, INFO, WARNING or ERROR",
    )
    server.add_argument("--log_path", help="log file (default: stderr)")
    server.add_argument("--cache_dir", help="OpenVINO model cache directory")
    server.add_argument(
        "--cpu_extension",
        help="an OpenVINO extension library added before any model loads (the server stops if it fails)",
    )
    server.add_argument(
        "--allow_client_shm",
        **flag,
        help="serve the system shared memory extension: local clients may register /dev/shm regions for tensors",
    )
    server.add_argument(
        "--shm_max_regions", type=_uint, default=DEFAULT_MAX_REGIONS, help="shared memory regions clients may register"
    )
    server.add_argument(
        "--shm_max_bytes", type=_uint, default=DEFAULT_MAX_BYTES, help="bytes of shared memory clients may register"
    )
    server.add_argument("--metrics_enable", **flag, help="serve /metrics on the REST port")
    server.add_argument("--metrics_list", default="", help="comma-separated metric names")
    server.add_argument("--allowed_origins", default="*", help="REST CORS: comma-separated origins, or *")
    server.add_argument("--allowed_methods", default="*", help="REST CORS: comma-separated methods, or *")
    server.add_argument("--allowed_headers", default="*", help="REST CORS: comma-separated headers, or *")
    server.add_argument("--allow_credentials", **flag, help="REST CORS: send Access-Control-Allow-Credentials")
    server.add_argument(
        "--api_key_file",
        help="file holding one key: every call but liveness and readiness must send 'Authorization: Bearer <key>'",
    )
    server.add_argument(
        "--allow_model_control",
        **flag,
        help="serve the repository extension's load and unload to clients (the index is served either way)",
    )
    server.add_argument(
        "--grpc_restricted_protocol",
        "--grpc-restricted-protocol",
        action="append",
        default=[],
        metavar="GROUPS:KEY=VALUE",
        help="gRPC calls of these groups need metadata triton-grpc-protocol-KEY: VALUE (VALUE @file: read from file); "
        "repeatable",
    )
    server.add_argument(
        "--rest_restricted_api",
        "--http-restricted-api",
        action="append",
        default=[],
        metavar="GROUPS:KEY=VALUE",
        help="REST calls of these groups need header KEY: VALUE (VALUE @file: read from file); repeatable",
    )
    server.add_argument("--tls_cert", help="PEM certificate chain: serve gRPC and REST over TLS")
    server.add_argument("--tls_key", help="PEM private key of --tls_cert")
    server.add_argument("--tls_client_ca", help="PEM CA bundle: require client certificates it signed (mutual TLS)")
    multi = parser.add_argument_group("multi model")
    multi.add_argument("--config_path", help="config.json (or a directory holding it)")
    single = parser.add_argument_group("single model")
    single.add_argument("--model_name", help="the name the model is served under")
    single.add_argument(
        "--model_path", help="model directory (version subdirectories) or file; local, s3://, gs:// or az://"
    )
    single.add_argument("--batch_size", help="batch size: a number, a range N:M, or auto")
    single.add_argument("--shape", help='input shape: (1,3,224,224), auto, or JSON per input {"x": "(1,10)"}')
    single.add_argument("--layout", help="layout, e.g. NHWC:NCHW (served:model), or JSON per input")
    single.add_argument("--mean")
    single.add_argument("--scale")
    single.add_argument("--color_format")
    single.add_argument("--precision")
    single.add_argument("--model_version_policy", help='JSON, e.g. {"latest": {"num_versions": 2}}')
    single.add_argument(
        "--nireq", type=_uint, default=0, help="OpenVINO infer requests per model version (0 = OpenVINO's optimum)"
    )
    single.add_argument("--target_device", help="OpenVINO device (CPU by default)")
    single.add_argument("--plugin_config", help='JSON, e.g. {"NUM_STREAMS": "1"}')
    single.add_argument("--stateful", **flag)
    single.add_argument("--idle_sequence_cleanup", **flag)
    single.add_argument("--low_latency_transformation", **flag)
    single.add_argument("--max_sequence_number", type=_uint)
    manage = parser.add_argument_group("config management")
    manage.add_argument("--list_models", **flag, help="OVMS's config management: refused (edit config.json)")
    manage.add_argument("--add_to_config", help="OVMS's config management: refused (edit config.json)")
    manage.add_argument("--remove_from_config", help="OVMS's config management: refused (edit config.json)")
    manage.add_argument("--pull", **flag, help="OVMS's model download: refused (nothing is downloaded)")
    manage.add_argument(
        "--model_repository_path",
        help="where explicit loads (--allow_model_control) find models that nothing configures (default: "
        "config.json's directory)",
    )
    for action in parser._actions:  # the flags pyovms does not act on say why, in the words of the startup warning
        if action.dest in NOT_ACTED_ON:
            action.help = f"accepted for OVMS command lines, no effect: {NOT_ACTED_ON[action.dest]}"
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Parse and validate; raise UsageError with OVMS's message for a bad combination."""
    args = build_parser().parse_args(argv)
    return settings_from_args(args)


def _valid_address(address: str) -> bool:
    """An IPv4/IPv6 address or a hostname; all-numeric names that are no IPv4 address (`192.0.2`) are refused."""
    try:
        ipaddress.ip_address(address.strip("[]"))
        return True
    except ValueError:
        if re.fullmatch(r"[0-9.]+", address):
            return False
        return bool(
            re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*", address)
        )


def _addresses(text: str, flag_name: str) -> list[str]:
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if not addresses or not all(_valid_address(a) for a in addresses):
        raise UsageError(f"{flag_name} has invalid format: proper hostname or IP address expected.")
    return addresses


def parse_channel_arguments(text: str) -> list[tuple[str, Any]]:
    """`k=v,k=v` (OVMS's --grpc_channel_arguments) as grpc options; integer values become ints."""
    options: list[tuple[str, Any]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"grpc channel argument must be key=value: {item}")
        value = value.strip()
        try:
            options.append((key.strip(), int(value)))
        except ValueError:
            options.append((key.strip(), value))
    return options


def _json_object(text: str | None, flag_name: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag_name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{flag_name} must be a JSON object")
    return value


def settings_from_args(args: argparse.Namespace) -> Settings:
    cores = os.cpu_count() or 1
    model_params = (args.batch_size, args.shape, args.model_version_policy, args.target_device, args.plugin_config)
    if args.demo and (args.config_path or args.model_name or args.model_path):
        raise UsageError("--demo serves its own repository; it excludes config_path, model_name and model_path")
    if args.config_path and (args.model_name or args.model_path):
        raise UsageError("Use either config_path or model_path with model_name")
    if not args.demo and not args.config_path and not (args.model_name and args.model_path):
        raise UsageError("Use config_path or model_path with model_name")
    if args.config_path and (any(p is not None for p in model_params) or args.nireq):
        raise UsageError("Model parameters in CLI are exclusive with the config file")
    if not 1 <= args.grpc_workers <= cores:
        raise UsageError(f"grpc_workers count should be from 1 to CPU core count : {cores}")
    port = args.port if args.port is not None else (DEMO_PORT if args.demo else 0)
    if args.metrics_enable and args.rest_port == 0:
        raise UsageError("rest_port setting is missing, metrics are enabled on rest port")
    if not args.metrics_enable and args.metrics_list:
        raise UsageError("metrics_enable setting is missing, required when metrics_list is provided")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("tls_cert and tls_key must be given together")
    if args.tls_client_ca and not args.tls_cert:
        raise UsageError("tls_client_ca needs tls_cert and tls_key")
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        value = getattr(args, name)
        if value and not os.path.isfile(value):
            raise UsageError(f"{name}: no such file: {value}")
    if args.metrics_list:
        from .observability.metrics import HELP  # the known metric names

        unknown = [n.strip() for n in args.metrics_list.split(",") if n.strip() and n.strip() not in HELP]
        if unknown:
            raise UsageError(f"Invalid name in metrics_list: {', '.join(unknown)}")
    if args.rest_port == 0 and port == 0:
        raise UsageError("port and rest_port cannot both be unset")
    if args.rest_workers is not None:
        if not 2 <= args.rest_workers <= MAX_REST_WORKERS:
            raise UsageError(f"rest_workers count should be from 2 to {MAX_REST_WORKERS}")
        if args.rest_port == 0:
            raise UsageError(
                "rest_workers is set but rest_port is not set. rest_port is required to start rest servers"
            )
    if port > MAX_PORT:
        raise UsageError(f"port number out of range from 0 to {MAX_PORT}")
    if args.rest_port > MAX_PORT:
        raise UsageError(f"rest_port number out of range from 0 to {MAX_PORT}")
    rest_addresses = _addresses(args.rest_bind_address, "rest_bind_address")
    grpc_addresses = _addresses(args.grpc_bind_address, "grpc_bind_address")
    if port == args.rest_port and port != 0:
        raise UsageError("port and rest_port cannot have the same values")
    if args.cpu_extension and not os.path.exists(args.cpu_extension):
        raise UsageError(
            f"File path provided as an --cpu_extension parameter does not exist in the filesystem: {args.cpu_extension}"
        )
    for command in ("list_models", "add_to_config", "remove_from_config", "pull"):
        if getattr(args, command) not in (None, False):
            raise UsageError(
                f"--{command} is an OVMS command pyovms does not serve: edit config.json instead (pyovms applies it "
                "while running), and place models in the repository yourself"
            )
    if args.log_level not in LOG_LEVELS:
        raise UsageError("log_level should be one of: TRACE, DEBUG, INFO, WARNING, ERROR")
    if args.library_log_level not in LOG_LEVELS:
        raise UsageError("library_log_level should be one of: TRACE, DEBUG, INFO, WARNING, ERROR")
    stateful_flags = (args.low_latency_transformation, args.max_sequence_number, args.idle_sequence_cleanup)
    if any(f is not None for f in stateful_flags) and not args.stateful:
        raise UsageError(
            "Setting low_latency_transformation, max_sequence_number and idle_sequence_cleanup require setting "
            "stateful flag for the model."
        )
    try:
        channel_arguments = parse_channel_arguments(args.grpc_channel_arguments)
    except ValueError as exc:
        raise UsageError(f"grpc_channel_arguments: {exc}") from exc
    try:
        api_key = access.read_api_key(args.api_key_file) if args.api_key_file else None
        grpc_restrictions = access.parse_restrictions(
            args.grpc_restricted_protocol, "grpc_restricted_protocol", access.GRPC_HEADER_PREFIX
        )
        rest_restrictions = access.parse_restrictions(args.rest_restricted_api, "rest_restricted_api")
    except access.AccessError as exc:
        raise UsageError(str(exc)) from exc

    config_path = args.config_path
    if config_path and os.path.isdir(config_path):
        config_path = os.path.join(config_path, "config.json")
    model = None
    if args.model_name:
        model = ModelConfig(
            name=args.model_name,
            base_path=os.path.abspath(os.path.expanduser(args.model_path))
            if "://" not in args.model_path
            else args.model_path,
            batch_size=args.batch_size,
            shape=args.shape,
            layout=args.layout,
            model_version_policy=_json_object(args.model_version_policy, "model_version_policy"),
            nireq=args.nireq,
            target_device=args.target_device or "CPU",
            plugin_config=_json_object(args.plugin_config, "plugin_config") or {},
        )
    return Settings(
        port=port,
        grpc_bind_address=grpc_addresses,
        rest_port=args.rest_port,
        rest_bind_address=rest_addresses,
        grpc_workers=args.grpc_workers,
        worker_affinity=args.worker_affinity == "cores",
        inference_threads=inference_threads(args.grpc_workers),
        cpu_extension=args.cpu_extension or None,
        grpc_max_threads=args.grpc_max_threads,
        grpc_memory_quota=args.grpc_memory_quota,
        grpc_channel_arguments=channel_arguments,
        grpc_max_message_size=args.grpc_max_message_size,
        rest_workers=args.rest_workers,
        rest_max_body_size=args.rest_max_body_size,
        max_image_decoded_bytes=args.max_image_decoded_bytes,
        tls=TlsSettings(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None,
        cors=CorsSettings(
            args.allowed_origins, args.allowed_methods, args.allowed_headers, bool(args.allow_credentials)
        ),
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        storage_timeout_s=args.storage_timeout_seconds,
        log_level=args.log_level,
        library_log_level=args.library_log_level,
        log_path=args.log_path,
        cache_dir=args.cache_dir,
        allow_client_shm=bool(args.allow_client_shm),
        allow_model_control=bool(args.allow_model_control),
        api_key=api_key,
        grpc_restrictions=grpc_restrictions,
        rest_restrictions=rest_restrictions,
        shm_max_regions=args.shm_max_regions,
        shm_max_bytes=args.shm_max_bytes,
        metrics_enable=bool(args.metrics_enable),
        metrics_list=args.metrics_list,
        config_path=config_path,
        model_repository_path=args.model_repository_path,
        model=model,
        demo=args.demo,
        inline_threshold_us=args.inline_threshold_us,
        max_queued_requests=args.max_queued_requests,
        event_loop=args.event_loop,
        shutdown_grace_s=max(0.0, args.shutdown_grace_seconds),
        unused_flags={name: why for name, why in NOT_ACTED_ON.items() if getattr(args, name) not in (None, False)},
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pyovms` command; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:
        print(f"pyovms {__version__}")
        return 0
    try:
        settings = parse_settings(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EX_USAGE
    except SystemExit as exc:  # argparse: --help (0), or a flag it cannot parse (2, message printed)
        return EX_USAGE if exc.code == 2 else int(exc.code or 0)
    problem = protobuf_mismatch()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    from .server import run  # imported late: openvino and grpc load only when serving

    return run(settings, argv)
