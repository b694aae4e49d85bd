"""Model directories in object storage (`s3://`, `gs://`, `az://`): version directories listed remotely, the chosen
versions downloaded into a local cache and loaded from there like local ones.

- The filesystems are fsspec's (s3fs, gcsfs, adlfs), installed by the extras `pyovms[s3]`, `[gcs]`, `[azure]` or
  `[cloud]`; a URL whose extra is missing fails with a message naming it.
- Credentials and endpoints come from OVMS's environment variables, then from each SDK's standard chain:
  `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_PROFILE` and `S3_ENDPOINT`
  (a MinIO or other S3-compatible server; without a scheme it is `http://`, as OVMS reads it);
  `GOOGLE_APPLICATION_CREDENTIALS` (and `STORAGE_EMULATOR_HOST` for an emulator, read anonymously);
  `AZURE_STORAGE_CONNECTION_STRING`. `azfs://` (Azure Files shares) is refused with a message: no fsspec filesystem
  serves it.
- The cache (`PYOVMS_REMOTE_CACHE_DIR`, else `$XDG_CACHE_HOME/pyovms/remote`, else the system's temporary
  directory) holds one directory per model URL and version, with a manifest of the objects it was downloaded from
  (name, size, ETag). A version whose objects are unchanged is not downloaded again, across restarts too. A version
  is downloaded into a directory of its own and renamed into place, so several workers (`--grpc_workers`) sharing the
  cache never see a half-written one.
- Downloads are parallel (fsspec's batched `get`) and streamed to files; files over 64 MB get a log line before and
  after. Errors name the URL and the cause, never a secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServingError, Status

log = logging.getLogger("pyovms.remote_storage")

SCHEMES = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "az": ("adlfs", "azure")}
"""URL scheme -> (the fsspec implementation's module, the pyovms extra that installs it)."""

MANIFEST = ".pyovms-manifest.json"
LARGE_FILE_BYTES = 64 << 20

Listing = dict[str, tuple[int, str]]
"""A version directory's objects: path relative to it -> (size, ETag or modification stamp)."""


def is_remote(path: str) -> bool:
    """Whether `path` is a URL of object storage that pyovms reads (or one of a scheme it refuses clearly)."""
    return "://" in path and path.split("://", 1)[0] in (*SCHEMES, "azfs")


def cache_root() -> Path:
    """Where downloaded versions are kept."""
    configured = os.environ.get("PYOVMS_REMOTE_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidate = Path(base) / "pyovms" / "remote"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        if os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / "pyovms-remote"  # a read-only home


def _filesystem(scheme: str) -> Any:
    """The fsspec filesystem of `scheme`, configured from OVMS's environment variables."""
    if scheme == "azfs":
        raise ServingError(Status.PATH_INVALID, "azfs:// (Azure Files shares) is not served; use az:// (Blob Storage)")
    module, extra = SCHEMES[scheme]
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if scheme == "gs" and emulator:  # gcsfs would first probe the emulator for zonal buckets over gRPC (60 s each)
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    try:
        implementation = __import__(module)
    except ImportError as exc:
        raise ServingError(
            Status.PATH_INVALID, f"{scheme}:// paths need {module}: pip install 'pyovms[{extra}]'"
        ) from exc
    if scheme == "s3":
        options: dict[str, Any] = {}
        endpoint = os.environ.get("S3_ENDPOINT")
        if endpoint:
            options["endpoint_url"] = endpoint if "://" in endpoint else f"http://{endpoint}"
        if os.environ.get("AWS_REGION"):
            options["client_kwargs"] = {"region_name": os.environ["AWS_REGION"]}
        if os.environ.get("AWS_PROFILE"):
            options["profile"] = os.environ["AWS_PROFILE"]
        return implementation.S3FileSystem(**options)
    if scheme == "gs":
        token = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or ("anon" if emulator else "google_default")
        return implementation.GCSFileSystem(token=token)
    connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    return implementation.AzureBlobFileSystem(**({"connection_string": connection} if connection else {}))


def _cause(exc: BaseException) -> str:
    """An error of a storage client for a message: its type and first line, without secrets (SDK messages name the
    bucket, key and operation, not credentials)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class RemoteModelDirectory:
    """A model's `base_path` in object storage: its version directories, and local copies of them."""

    url: str

    def __post_init__(self) -> None:
        self.scheme, rest = self.url.split("://", 1)
        self.root = rest.rstrip("/")
        self._fs: Any = None
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.cache = cache_root() / digest

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = _filesystem(self.scheme)
        return self._fs

    def listing(self) -> dict[int, Listing]:
        """Every version directory (a positive integer name) with its objects; ServingError naming the URL and the
        cause when the storage cannot be listed."""
        try:
            self.fs.invalidate_cache()
            objects = self.fs.find(self.root, detail=True)
            bucket = self.root.split("/", 1)[0]
            if not objects and not self.fs.exists(bucket):  # some stores list a missing bucket as empty
                raise FileNotFoundError(f"no bucket or container {bucket}")
        except ServingError:
            raise
        except Exception as exc:  # missing bucket, credentials, network, permissions: a later poll tries again
            raise ServingError(Status.PATH_INVALID, f"{self.url}: {_cause(exc)}") from exc
        versions: dict[int, Listing] = {}
        prefix = self.root + "/"
        for name, info in objects.items():
            if not name.startswith(prefix) or info.get("type") == "directory":
                continue
            first, _, relative = name[len(prefix) :].partition("/")
            if not first.isdigit() or int(first) <= 0 or not relative:
                continue
            stamp = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("mtime") or "")
            versions.setdefault(int(first), {})[relative] = (int(info.get("size") or 0), stamp)
        return versions

    def fetch(self, version: int, objects: Listing) -> Path:
        """A local directory holding `version` as `objects` describes it: the cached copy when it matches, else a
        new download (parallel, streamed), renamed into place."""
        target = self.cache / str(version)
        manifest = {name: list(value) for name, value in sorted(objects.items())}
        if _read_manifest(target) == manifest:
            log.info("%s/%d: unchanged, loaded from the cache %s", self.url, version, target)
            return target
        self.cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.cache))
        try:
            self._download(version, objects, staging)
            (staging / MANIFEST).write_text(json.dumps(manifest))
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{version}-old-", dir=self.cache))
                os.replace(target, retired / "version")
                shutil.rmtree(retired, ignore_errors=True)
            os.replace(staging, target)
        except OSError:
            if _read_manifest(target) != manifest:
                raise
            # another worker put the same version in place first: that copy serves
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # nothing left once renamed into place
        return target

    def _download(self, version: int, objects: Listing, staging: Path) -> None:
        remote = [f"{self.root}/{version}/{name}" for name in objects]
        local = [str(staging / name) for name in objects]
        for path in local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        large = [name for name, (size, _) in objects.items() if size >= LARGE_FILE_BYTES]
        total = sum(size for size, _ in objects.values())
        started = time.monotonic()
        if large:
            log.info("%s/%d: downloading %d files, %.0f MB (large: %s)", self.url, version, len(objects),
                     total / 1e6, ", ".join(large))  # fmt: skip
        try:
            self.fs.get(remote, local)
        except Exception as exc:
            raise ServingError(Status.FILE_INVALID, f"{self.url}/{version}: {_cause(exc)}") from exc
        log.info("%s/%d: downloaded %d files, %.1f MB in %.1f s", self.url, version, len(objects), total / 1e6,
                 time.monotonic() - started)  # fmt: skip


def _read_manifest(directory: Path) -> dict[str, list[Any]] | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
