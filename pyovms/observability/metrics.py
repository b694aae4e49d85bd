"""Prometheus metrics on the REST port's `/metrics` (spec §7.3): OVMS's names, labels and histogram buckets.

Counters and histograms are plain integers updated on the event loop (no locks), and read when scraped:
request outcomes and request times per front end come from `record`; inference and infer-request wait times,
requests in flight and pool sizes come from each servable's statistics. Every available servable has its series
from the start (value 0). Enabled by `--metrics_enable` or the config's `monitoring.metrics.enable`; the set is
chosen by `--metrics_list` / `monitoring.metrics.metrics_list` (OVMS's default set otherwise).

The text is written here rather than by prometheus-client's writer, which would rename counters to `*_total`;
OVMS's names are kept as they are. Label values are escaped with prometheus-client's helper.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Protocol

from prometheus_client.utils import floatToGoString

from ..errors import ServingError, Status
from .statistics import BUCKETS_US, Histogram


class ServedVersion(Protocol):
    """What a scrape reads of one version (the repository's `ModelVersion`)."""

    @property
    def version(self) -> int: ...
    @property
    def state(self) -> Enum: ...
    @property
    def servable(self) -> object | None: ...


class ServedModel(Protocol):
    """What a scrape reads of one name: a model, a pipeline or a graph (the repository's `Model`)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def versions(self) -> Mapping[int, ServedVersion]: ...
    def default_version(self) -> ServedVersion | None: ...


class ServedModels(Protocol):
    """What is served now (the repository's `Repository`); declared here so that metrics sit below the repository
    and every layer may count into the statistics they read."""

    def lookup(self, name: str) -> ServedModel | None: ...
    def servables(self) -> Sequence[ServedModel]: ...


DEFAULT = (
    "ovms_streams",
    "ovms_current_requests",
    "ovms_requests_success",
    "ovms_requests_fail",
    "ovms_request_time_us",
    "ovms_inference_time_us",
    "ovms_wait_for_infer_req_time_us",
    "ovms_current_graphs",
    "ovms_requests_accepted",
    "ovms_requests_rejected",
    "ovms_responses",
)
OPTIONAL = ("ovms_infer_req_queue_size", "ovms_infer_req_active", "ovms_graph_error")
GRAPH_METRICS = ("ovms_requests_accepted", "ovms_requests_rejected", "ovms_responses")
"""Counters of graph requests (`method` Unary or Stream; no version label), in this order in `_graph_outcomes`."""
HELP = {
    "ovms_streams": ("gauge", "Number of OpenVINO execution streams."),
    "ovms_current_requests": ("gauge", "Number of inference requests currently in process."),
    "ovms_requests_success": ("counter", "Number of successful requests to a model or a DAG."),
    "ovms_requests_fail": ("counter", "Number of failed requests to a model or a DAG."),
    "ovms_request_time_us": ("histogram", "Processing time of requests to a model or a DAG."),
    "ovms_inference_time_us": ("histogram", "Inference execution time in the OpenVINO backend."),
    "ovms_wait_for_infer_req_time_us": ("histogram", "Request waiting time in the scheduling queue."),
    "ovms_infer_req_queue_size": ("gauge", "Inference request queue size (nireq)."),
    "ovms_infer_req_active": ("gauge", "Number of currently consumed inference requests from the processing queue."),
    "ovms_current_graphs": ("gauge", "Number of graph instances currently in use (unary requests and streams)."),
    "ovms_requests_accepted": ("counter", "Number of requests to a graph that entered it."),
    "ovms_requests_rejected": ("counter", "Number of requests to a graph refused before they entered it."),
    "ovms_responses": ("counter", "Number of responses a graph sent."),
    "ovms_graph_error": ("counter", "Number of graph runs that ended with an error."),
}
API = "KServe"
INTERFACES = ("gRPC", "REST")
METHODS = ("ModelInfer", "ModelMetadata", "ModelReady")


def parse_metrics_list(text: str | Iterable[str]) -> tuple[str, ...]:
    """The enabled metric names; raise ServingError `Invalid name in metrics_list` for an unknown one."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in HELP]
    if unknown:
        raise ServingError(Status.INVALID_METRICS_LIST, ", ".join(unknown))
    return tuple(names) or DEFAULT


class Metrics:
    """The enabled metrics of one server."""

    def __init__(self, repository: ServedModels, enabled: Iterable[str] = DEFAULT) -> None:
        self.repository = repository
        self.enabled = frozenset(enabled)
        self._outcomes: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._request_time: dict[tuple[str, str, str], Histogram] = defaultdict(Histogram)
        self._graph_outcomes: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        """Unary graph requests by (interface, name): accepted, rejected, responses."""

    def record(self, interface: str, method: str, name: str, version_text: str, ok: bool, seconds: float) -> None:
        """One KServe request of a front end; requests to unknown servables are not counted (no series exist)."""
        model = self.repository.lookup(name)
        if model is None:
            return
        version = "" if method == "ModelReady" else _version_label(model, version_text)
        self._outcomes[interface, method, name, version][0 if ok else 1] += 1
        if method == "ModelInfer" and ok:
            self._request_time[interface, name, version].add(int(seconds * 1e9))
        if method == "ModelInfer" and model.kind == "graph":
            counts = self._graph_outcomes[interface, name]
            if ok:  # a unary graph request that failed is counted as refused, whatever stage it failed at
                counts[0] += 1
                counts[2] += 1
            else:
                counts[1] += 1

    def exposition(self) -> bytes:
        """The Prometheus text format (0.0.4) of every enabled metric."""
        lines: list[str] = []
        versions = list(self._versions())
        for metric in (*DEFAULT, *OPTIONAL):
            if metric in self.enabled:
                kind, text = HELP[metric]
                lines.append(f"# HELP {metric} {text}")
                lines.append(f"# TYPE {metric} {kind}")
                lines.extend(self._samples(metric, versions))
        return ("\n".join(lines) + "\n").encode()

    def _versions(self) -> Iterator[tuple[str, str, object]]:
        """(name, version, servable) of every AVAILABLE model version and pipeline."""
        for model in self.repository.servables():
            for version, entry in sorted(model.versions.items()):
                if entry.state.name == "AVAILABLE" and entry.servable is not None:
                    yield model.name, str(version), entry.servable

    def _samples(self, metric: str, versions: list[tuple[str, str, object]]) -> Iterator[str]:
        if metric in GRAPH_METRICS or metric in ("ovms_current_graphs", "ovms_graph_error"):
            yield from self._graph_samples(metric, versions)
            return
        if metric in ("ovms_requests_success", "ovms_requests_fail"):
            outcomes = dict(self._outcomes)
            for name, version, _ in versions:
                for interface in INTERFACES:
                    for method in METHODS:
                        key = (interface, method, name, "" if method == "ModelReady" else version)
                        outcomes.setdefault(key, [0, 0])
            column = 0 if metric == "ovms_requests_success" else 1
            for (interface, method, name, version), counts in sorted(outcomes.items()):
                labels = {"api": API, "interface": interface, "method": method, "name": name}
                if version:
                    labels["version"] = version
                yield _sample(metric, labels, counts[column])
        elif metric == "ovms_request_time_us":
            histograms = dict(self._request_time)
            for name, version, _ in versions:
                for interface in INTERFACES:
                    histograms.setdefault((interface, name, version), Histogram())
            for (interface, name, version), histogram in sorted(histograms.items()):
                yield from _histogram(metric, {"interface": interface, "name": name, "version": version}, histogram)
        else:
            for name, version, servable in versions:
                labels = {"name": name, "version": version}
                statistics = servable.statistics  # type: ignore[attr-defined]
                pool = getattr(servable, "pool", None)
                if metric == "ovms_inference_time_us":
                    yield from _histogram(metric, labels, statistics.compute_infer)
                elif metric == "ovms_wait_for_infer_req_time_us":
                    yield from _histogram(metric, labels, statistics.queue)
                elif metric == "ovms_current_requests":
                    yield _sample(metric, labels, statistics.in_flight)
                elif metric == "ovms_streams" and hasattr(servable, "streams"):
                    yield _sample(metric, labels, servable.streams)  # type: ignore[attr-defined]
                elif metric == "ovms_infer_req_queue_size" and pool is not None:
                    yield _sample(metric, labels, pool.size)
                elif metric == "ovms_infer_req_active" and pool is not None:
                    yield _sample(metric, labels, pool.active)

    def _graph_samples(self, metric: str, versions: list[tuple[str, str, object]]) -> Iterator[str]:
        """Graph series: unary counts from `record`, stream counts and gauges from each graph's counters."""
        graphs = [(name, servable) for name, _, servable in versions if hasattr(servable, "counters")]
        for name, graph in graphs:
            counters = graph.counters  # type: ignore[attr-defined]
            if metric == "ovms_current_graphs":
                yield _sample(metric, {"name": name}, counters.runs)
            elif metric == "ovms_graph_error":
                yield _sample(metric, {"name": name}, counters.errors)
            else:
                column = GRAPH_METRICS.index(metric)
                for interface in INTERFACES:
                    value = self._graph_outcomes.get((interface, name), [0, 0, 0])[column]
                    yield _sample(metric, _graph_labels(interface, "Unary", name), value)
                stream = (counters.stream_accepted, counters.stream_rejected, counters.stream_responses)[column]
                yield _sample(metric, _graph_labels("gRPC", "Stream", name), stream)


def _version_label(model: ServedModel, version_text: str) -> str:
    """The `version` label of a request: the version it named, else the default one; "1" for pipelines and
    graphs."""
    if model.kind != "model":
        return "1"
    if version_text not in ("", "0"):
        return version_text
    entry = model.default_version()
    return str(entry.version) if entry is not None else ""


def _graph_labels(interface: str, method: str, name: str) -> dict[str, str]:
    return {"api": API, "interface": interface, "method": method, "name": name}


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    return f"{name}{_labels(labels)} {floatToGoString(value)}"


def _histogram(name: str, labels: dict[str, str], histogram: Histogram) -> Iterator[str]:
    cumulative = 0
    for bound, count in zip((*BUCKETS_US, float("inf")), histogram.buckets, strict=True):
        cumulative += count
        yield _sample(f"{name}_bucket", {**labels, "le": floatToGoString(bound)}, cumulative)
    yield _sample(f"{name}_count", labels, histogram.count)
    yield _sample(f"{name}_sum", labels, histogram.ns / 1000)


def merge_expositions(texts: Sequence[str], counters_only: bool = False) -> str:
    """One exposition from several processes' (`--grpc_workers`): each series' samples summed, families and series
    in the order they first appear. Every pyovms metric sums sensibly, gauges too (requests in flight, streams and
    infer requests of the whole server). `counters_only` drops the gauges: what a process that has ended still
    adds (its counters must not go backwards; its gauges are gone with it)."""
    families: dict[str, tuple[list[str], dict[str, float]]] = {}
    kinds: dict[str, str] = {}
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                _, kind_of_line, family, rest = line.split(" ", 3)
                if kind_of_line == "TYPE":
                    kinds[family] = rest
            if not line:
                continue
            header, samples = families.setdefault(family, ([], {}))
            if line.startswith("#"):
                if line not in header:
                    header.append(line)
            else:
                series, _, value = line.rpartition(" ")
                samples[series] = samples.get(series, 0.0) + float(value)
    lines = [
        line
        for family, (header, samples) in families.items()
        if not (counters_only and kinds.get(family) == "gauge")
        for line in (*header, *(f"{series} {floatToGoString(value)}" for series, value in samples.items()))
    ]
    return "\n".join(lines) + "\n" if lines else ""
