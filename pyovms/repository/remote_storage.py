"""Model directories in object storage (`s3://`, `gs://`, `az://`): version directories listed remotely, the chosen
versions downloaded into a local cache and loaded from there like local ones.

- The filesystems are fsspec's (s3fs, gcsfs, adlfs), installed by the extras `pyovms[s3]`, `[gcs]`, `[azure]` or
  `[cloud]`; a URL whose extra is missing fails with a message naming it.
- Credentials and endpoints come from OVMS's environment variables, then from each SDK's standard chain:
  `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_PROFILE` and `S3_ENDPOINT`
  (a MinIO or other S3-compatible server; without a scheme it is `http://`, as OVMS reads it), or the server in the
  URL itself, OVMS's `s3://host:port/bucket/path`;
  `GOOGLE_APPLICATION_CREDENTIALS` (and `STORAGE_EMULATOR_HOST` for an emulator, read anonymously);
  `AZURE_STORAGE_CONNECTION_STRING`. `azfs://` (Azure Files shares) is refused with a message: no fsspec filesystem
  serves it.
- The cache (`PYOVMS_REMOTE_CACHE_DIR`, else `$XDG_CACHE_HOME/pyovms/remote`, else the system's temporary
  directory) holds one directory per model URL and version, with a manifest of the objects it was downloaded from
  (name, size, ETag). A version whose objects are unchanged is not downloaded again, across restarts too. A version
  is downloaded into a directory of its own and renamed into place, so several workers (`--grpc_workers`) sharing the
  cache never see a half-written one.
- Downloads are parallel (fsspec's batched `get`) and streamed to files; a download holding a file over 64 MB logs
  its progress (at most every 10 s, and at each quarter). Errors name the URL and the cause, never a secret.
- One slow or unreachable storage holds up nothing else: each directory talks to its storage on an event loop and in
  threads of its own (so a client that blocks, as gcsfs's token refresh does, stalls only its model), each request
  has connection and read timeouts, and a listing answers within `timeout_s` or fails with a message saying so. A
  listing still running when it times out is waited on again by the next attempt rather than started twice.
- A download in progress holds a lock on its staging directory (`flock`); staging directories left by a process that
  died mid-download hold none, and the next download of that model removes them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ServingError, Status

try:
    from fsspec.callbacks import Callback
except ImportError:  # no object storage extra installed: nothing is downloaded
    Callback = object  # type: ignore[assignment,misc]

log = logging.getLogger("pyovms.remote_storage")

SCHEMES = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "az": ("adlfs", "azure")}
"""URL scheme -> (the fsspec implementation's module, the pyovms extra that installs it)."""

MANIFEST = ".pyovms-manifest.json"
LARGE_FILE_BYTES = 64 << 20
PROGRESS_EVERY_S = 10.0
STALE_AFTER_S = 60.0
"""A staging directory this old whose lock nobody holds was left by a process that died (the age covers the moment
between its creation and its lock)."""

_HOST_PORT = re.compile(r"[A-Za-z0-9.-]+:[0-9]+|\[[0-9A-Fa-f:.]+\]:[0-9]+")
"""`host:port` (or `[ipv6]:port`) as the first part of an S3 URL."""

DEFAULT_TIMEOUT_S = 10.0
"""`--storage_timeout_seconds`: the connection and read timeout of each request to storage, and the bound on listing
a model's versions, retries included."""

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


def _filesystem(
    scheme: str, endpoint: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, loop: Any = None
) -> Any:
    """The fsspec filesystem of `scheme`, configured from OVMS's environment variables (`endpoint`: an S3 server
    named in the URL itself, before `S3_ENDPOINT`), with `timeout_s` on each request where the client takes one
    (Azure's client keeps its own), running its requests on `loop`."""
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
        options: dict[str, Any] = {
            "loop": loop,
            "config_kwargs": {"connect_timeout": timeout_s, "read_timeout": timeout_s},
        }
        endpoint = endpoint or os.environ.get("S3_ENDPOINT")
        if endpoint:
            options["endpoint_url"] = endpoint if "://" in endpoint else f"http://{endpoint}"
        if os.environ.get("AWS_REGION"):
            options["client_kwargs"] = {"region_name": os.environ["AWS_REGION"]}
        if os.environ.get("AWS_PROFILE"):
            options["profile"] = os.environ["AWS_PROFILE"]
        if not _aws_credentials():
            log.info("No AWS credentials in the environment or the SDK's chain: S3 is read anonymously")
            options["anon"] = True
        return implementation.S3FileSystem(**options)
    if scheme == "gs":
        return implementation.GCSFileSystem(token=_google_credentials(emulator), requests_timeout=timeout_s, loop=loop)
    connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    return implementation.AzureBlobFileSystem(loop=loop, **({"connection_string": connection} if connection else {}))


def _aws_credentials() -> bool:
    """Whether the AWS SDK's chain (environment, profiles, instance or container roles) finds credentials; without
    any, public buckets are read anonymously, as OVMS does."""
    import botocore.session

    try:
        return botocore.session.Session(profile=os.environ.get("AWS_PROFILE")).get_credentials() is not None
    except Exception as exc:  # a profile that does not exist, an unreadable config file
        log.warning("AWS credentials could not be resolved (%s): S3 is read anonymously", _cause(exc))
        return False


GCS_READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


def _google_credentials(emulator: str | None) -> Any:
    """`GOOGLE_APPLICATION_CREDENTIALS` loaded by google-auth itself (gcsfs would hide why a key file is refused),
    else anonymous access to an emulator, else Google's default chain."""
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        return "anon" if emulator else "google_default"
    import google.auth

    credentials, _ = google.auth.load_credentials_from_file(path, scopes=[GCS_READ_SCOPE])
    return credentials


def _cause(exc: BaseException) -> str:
    """An error of a storage client for a message: its type and first line, without secrets (SDK messages name the
    bucket, key and operation, not credentials)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_timeout(exc: BaseException) -> bool:
    """Whether a storage client gave up waiting (fsspec's and asyncio's TimeoutError, botocore's Read/Connect
    TimeoutError, azure-core's ServiceRequest/ResponseTimeoutError)."""
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


@dataclass
class RemoteModelDirectory:
    """A model's `base_path` in object storage: its version directories, and local copies of them."""

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        self.scheme, rest = self.url.split("://", 1)
        self.endpoint: str | None = None
        """An S3 server named in the URL: OVMS's `s3://host:port/bucket/path` (a bucket name holds no `:`)."""
        first, _, remainder = rest.partition("/")
        if self.scheme == "s3" and _HOST_PORT.fullmatch(first):
            self.endpoint, rest = first, remainder
        self.root = rest.rstrip("/")
        self._fs: Any = None
        self._listing: concurrent.futures.Future[dict[int, Listing]] | None = None
        """The last listing started: one that is still running is waited on again, not started twice."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.cache = cache_root() / digest

    @property
    def fs(self) -> Any:
        if self._fs is None:  # on an event loop of its own (see the module's docstring)
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="pyovms-storage-loop", daemon=True).start()
            self._fs = _filesystem(self.scheme, self.endpoint, self.timeout_s, loop)
        return self._fs

    async def list_versions(self) -> dict[int, Listing]:
        """`listing` in a thread of its own, bounded by `timeout_s` (ServingError naming the bound when the storage
        does not answer in time)."""
        if self._listing is None or self._listing.done():
            self._listing = _in_thread(self.listing)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._listing), self.timeout_s)
        except TimeoutError:
            raise ServingError(Status.PATH_INVALID, f"{self.url}: {self._silence()}") from None

    def _silence(self) -> str:
        """The cause of a request or listing that timed out, in the same words whichever gave up first."""
        return f"the storage did not answer within {self.timeout_s:g} s (--storage_timeout_seconds)"

    async def download(self, version: int, objects: Listing) -> Path:
        """`fetch` in a thread of its own (bounded by the requests' timeouts, not overall: large files take time)."""
        return await asyncio.wrap_future(_in_thread(self.fetch, version, objects))

    def listing(self) -> dict[int, Listing]:
        """Every version directory (a positive integer name) with its objects; ServingError naming the URL and the
        cause when the storage cannot be listed."""
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.invalidate_cache()
            objects = self.fs.find(self.root, detail=True)
            missing = not objects and not self.fs.exists(bucket)  # some stores list a missing bucket as empty
        except FileNotFoundError:  # the others raise it, each in its own words (gcsfs: `b/<bucket>/o`)
            missing = True
        except ServingError:  # the filesystem cannot be set up (a missing extra)
            raise
        except Exception as exc:  # credentials, network, permissions: a later poll tries again
            cause = self._silence() if _is_timeout(exc) else _cause(exc)
            raise ServingError(Status.PATH_INVALID, f"{self.url}: {cause}") from exc
        if missing:
            raise ServingError(Status.PATH_INVALID, f"{self.url}: there is no bucket or container named {bucket}")
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
        remove_stale_staging(self.cache)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.cache))
        lock = os.open(staging, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
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
            os.close(lock)
        return target

    def _download(self, version: int, objects: Listing, staging: Path) -> None:
        remote = [f"{self.root}/{version}/{name}" for name in objects]
        local = [str(staging / name) for name in objects]
        for path in local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        large = [name for name, (size, _) in objects.items() if size >= LARGE_FILE_BYTES]
        total = sum(size for size, _ in objects.values())
        started = time.monotonic()
        progress = None
        if large:
            log.info("%s/%d: downloading %d files, %.0f MB (large: %s)", self.url, version, len(objects),
                     total / 1e6, ", ".join(large))  # fmt: skip
            progress = _Progress(f"{self.url}/{version}", total)
        try:
            self.fs.get(remote, local, **({"callback": progress} if progress else {}))
        except Exception as exc:
            raise ServingError(Status.FILE_INVALID, f"{self.url}/{version}: {_cause(exc)}") from exc
        log.info("%s/%d: downloaded %d files, %.1f MB in %.1f s", self.url, version, len(objects), total / 1e6,
                 time.monotonic() - started)  # fmt: skip


T = TypeVar("T")


def _in_thread(function: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
    """Run `function` in a daemon thread of its own: a storage call that hangs neither takes a thread from a shared
    pool nor holds up the process's exit (an executor's threads are joined at exit)."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="pyovms-storage", daemon=True).start()
    return future


def remove_stale_staging(cache: Path) -> None:
    """Remove the staging directories of `cache` (one model URL's) that no download holds: left by a process that
    died mid-download. A directory is removed only while this process holds its lock, so a live download (in this
    or another worker) is never touched."""
    now = time.time()
    for path in cache.glob(".*-*"):
        try:
            if not path.is_dir() or now - path.stat().st_mtime < STALE_AFTER_S:
                continue
            lock = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            continue  # a download in progress
        try:
            log.info("removing %s, left by a download that did not finish", path)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(lock)


class _FileProgress(Callback):
    """fsspec's callback for one file: hands the bytes it receives to the batch's `_Progress`."""

    def __init__(self, batch: _Progress) -> None:
        super().__init__()
        self.batch = batch
        self.reported = 0

    def call(self, *args: Any, **kwargs: Any) -> None:
        delta, self.reported = self.value - self.reported, self.value
        self.batch.add(delta)


class _Progress(Callback):
    """fsspec's callback for a batch holding a large file: logs the bytes received so far, at most every 10 s and at
    each quarter of the total. Its own size and value count files; each file's child callback counts bytes, and
    children may report from several threads."""

    def __init__(self, what: str, total: int) -> None:
        super().__init__()
        self.what, self.total = what, max(total, 1)
        self.received = 0
        self._lock = threading.Lock()
        self._logged_at = time.monotonic()
        self._quarter = 0

    def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Callback:
        return _FileProgress(self)

    def add(self, delta: int) -> None:
        with self._lock:
            self.received += delta
            quarter = min(4, self.received * 4 // self.total)
            now = time.monotonic()
            if quarter <= self._quarter and now - self._logged_at < PROGRESS_EVERY_S:
                return
            self._quarter, self._logged_at = max(quarter, self._quarter), now
        log.info("%s: %d%% downloaded (%.0f of %.0f MB)", self.what, min(100, self.received * 100 // self.total),
                 self.received / 1e6, self.total / 1e6)  # fmt: skip


def _read_manifest(directory: Path) -> dict[str, list[Any]] | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
