"""`--grpc_workers N`: N processes share the gRPC port (SO_REUSEPORT); a supervisor starts and stops them."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import textwrap
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.grpc import service_pb2, service_pb2_grpc

from pyovms.observability.metrics import merge_expositions

from ..support import models
from ..support.in_flight import SLOW_ARGS, InFlight
from ..support.server_process import ServerProcess, run_cli, wait_for

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="--grpc_workers 2 needs two cores")


def _worker_pids(log: str) -> list[int]:
    found = re.search(r"Started 2 gRPC workers: pids (\d+) (\d+)", log)
    assert found, log
    return [int(found.group(1)), int(found.group(2))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _infer_over_new_connections(address: str, count: int) -> None:
    """`count` requests, each over a connection of its own (the kernel hands each to a live worker)."""
    request = service_pb2.ModelInferRequest(model_name="dummy")
    request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.arange(10, dtype=np.float32).reshape(1, 10).tobytes())
    for _ in range(count):
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        got = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
        np.testing.assert_array_equal(got, np.arange(10, dtype=np.float32) + 1)


@pytest.fixture
def two_workers(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(
        ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--grpc_workers", "2"],
        tmp_path / "log",
        wait_ready=False,
    )
    wait_for(lambda: process.log().count("Server ready") == 2 or process.process.poll() is not None)
    yield process
    process.stop()


def test_both_workers_serve_and_stop_on_sigterm(two_workers):
    log = two_workers.log()
    pids = _worker_pids(log)
    serving = {int(pid) for pid in re.findall(r"\]\[(\d+)\]\[pyovms.server\]\[INFO\] Started gRPC server", log)}
    assert serving == set(pids)
    _infer_over_new_connections(two_workers.address, 8)  # the kernel spreads connections; every answer is right

    two_workers.process.send_signal(signal.SIGTERM)
    assert two_workers.process.wait(30) == 0
    assert not any(_alive(pid) for pid in pids)
    assert two_workers.log().count("Shutting down") == 2


REPLACED = r"gRPC worker {dead} was killed by SIGKILL; started gRPC worker (\d+) in its place \(restart {n} of at most 5 in 60 s\)"


EVERY_READY = "[pyovms.server][INFO] Every gRPC worker is ready: this worker answers ready"
ONE_NOT_READY = "[pyovms.server][INFO] A gRPC worker is not ready: this worker answers not ready until it is"


def test_the_server_is_ready_when_every_worker_is(two_workers):
    """Each worker answers ready only once the supervisor says every worker has loaded: both load lines come first."""
    wait_for(lambda: two_workers.log().count(EVERY_READY) == 2)
    log = two_workers.log()
    assert log.rindex("Server ready: initial load") < log.index(EVERY_READY)
    for pid in _worker_pids(log):
        assert f"[{pid}]{EVERY_READY}" in log
    assert two_workers.stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready


def test_a_dead_worker_is_replaced_while_the_others_serve(two_workers):
    first, second = _worker_pids(two_workers.log())
    wait_for(lambda: two_workers.log().count(EVERY_READY) == 2)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: re.search(REPLACED.format(dead=first, n=1), two_workers.log()) is not None)
    _infer_over_new_connections(two_workers.address, 8)  # answered by the others meanwhile
    replacement = int(re.search(REPLACED.format(dead=first, n=1), two_workers.log()).group(1))
    wait_for(lambda: two_workers.log().count("Server ready") == 3)
    # the survivor answered not ready while its peer was down, and ready again once the replacement had loaded
    wait_for(lambda: two_workers.log().count(f"[{second}]{EVERY_READY}") == 2)
    log = two_workers.log()
    assert log.index(f"[{second}]{ONE_NOT_READY}") < log.rindex(f"[{second}]{EVERY_READY}"), log
    assert f"[{replacement}]{EVERY_READY}" in log
    assert two_workers.stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
    assert re.search(rf"\]\[{replacement}\]\[pyovms.server\]\[INFO\] Started gRPC server", two_workers.log())
    assert two_workers.process.poll() is None and _alive(second) and _alive(replacement)
    _infer_over_new_connections(two_workers.address, 8)
    two_workers.process.send_signal(signal.SIGTERM)
    assert two_workers.process.wait(30) == 0
    assert not any(_alive(pid) for pid in (second, replacement))


def test_a_crash_loop_stops_the_server(two_workers):
    """Workers that keep dying after they got ready: the sixth death within a minute stops everything."""
    victim = _worker_pids(two_workers.log())[0]
    for death in range(1, 6):
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda d=death, v=victim: re.search(REPLACED.format(dead=v, n=d), two_workers.log()) is not None)
        victim = int(re.search(REPLACED.format(dead=victim, n=death), two_workers.log()).group(1))
        wait_for(lambda d=death: two_workers.log().count("Server ready") == 2 + d)
    os.kill(victim, signal.SIGKILL)
    assert two_workers.process.wait(60) == 128 + signal.SIGKILL
    assert f"gRPC worker {victim} was killed by SIGKILL: 6 deaths in 60 s; stopping the others" in two_workers.log()


def test_busy_port_fails_every_worker(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli(
            "--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--port", str(port),
            "--grpc_bind_address", "127.0.0.1", "--grpc_workers", "2",
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Failed to start gRPC server" in result.stderr
    assert "exited with status 1 before it was ready; stopping the others" in result.stderr


def test_demo_repository_is_built_once_for_all_workers(tmp_path):
    process = ServerProcess(
        ["--demo", "--grpc_workers", "2"], tmp_path / "log", wait_ready=False, env={"XDG_CACHE_HOME": str(tmp_path)}
    )
    try:
        wait_for(lambda: process.log().count("Server ready") == 2 or process.process.poll() is not None)
        log = process.log()
        assert log.count("Demo repository built in") == 1, log
        assert log.count("Server ready: initial load of 2 model(s) finished") == 2, log
    finally:
        process.stop()


def test_each_worker_gives_openvino_its_share_of_the_cores(tmp_path):
    """Two workers on two cores: one OpenVINO thread each, unless a model's plugin_config sets its own."""
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    config = {
        "model_config_list": [
            {"config": {"name": "shared", "base_path": str(tmp_path / "dummy")}},
            {
                "config": {
                    "name": "own",
                    "base_path": str(tmp_path / "dummy"),
                    "plugin_config": {"INFERENCE_NUM_THREADS": 2},
                }
            },
        ]
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    share = len(os.sched_getaffinity(0)) // 2
    process = ServerProcess(
        ["--config_path", str(tmp_path / "config.json"), "--grpc_workers", "2"], tmp_path / "log", wait_ready=False
    )
    try:
        wait_for(lambda: process.log().count("Server ready") == 2 or process.process.poll() is not None)
        log = process.log()
        assert log.count(f"OpenVINO uses {share} CPU threads in this process (INFERENCE_NUM_THREADS)") == 2, log
        assert log.count(f"model shared version 1: OpenVINO streams 1, threads {share}") == 2, log
        assert log.count("model own version 1: OpenVINO streams 1, threads 2") == 2, log
    finally:
        process.stop()


def _allowed_cores(pid: int, tid: int) -> set[int]:
    """A thread's CPU affinity, as the kernel reports it (/proc; "0-1,4")."""
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    listed = re.search(r"^Cpus_allowed_list:\s*(\S+)$", status, re.MULTILINE).group(1)
    cores: set[int] = set()
    for part in listed.split(","):
        first, _, last = part.partition("-")
        cores.update(range(int(first), int(last or first) + 1))
    return cores


def test_each_workers_event_loop_runs_on_its_own_cores(two_workers):
    """Pinned, two event loops can never queue on one core while the other idles. Every other thread (gRPC's,
    OpenVINO's, the loaders') stays free, so a worker that gets every connection still uses every core. A
    replacement takes its predecessor's cores."""
    everything = os.sched_getaffinity(0)
    pids = _worker_pids(two_workers.log())
    shares = [_allowed_cores(pid, pid) for pid in pids]
    assert not shares[0] & shares[1] and shares[0] | shares[1] == everything, shares
    assert "gRPC workers' event loops pinned to cores" in two_workers.log()
    wait_for(lambda: two_workers.log().count(EVERY_READY) == 2)
    _infer_over_new_connections(two_workers.address, 8)  # OpenVINO's threads exist once models ran
    for pid in pids:
        others = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if int(t.name) != pid]
        assert len(others) > 5 and {tid: _allowed_cores(pid, tid) for tid in others} == dict.fromkeys(
            others, everything
        )
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: re.search(REPLACED.format(dead=pids[0], n=1), two_workers.log()) is not None)
    replacement = int(re.search(REPLACED.format(dead=pids[0], n=1), two_workers.log()).group(1))
    wait_for(lambda: two_workers.log().count("Server ready") == 3)
    assert _allowed_cores(replacement, replacement) == shares[0]


def test_worker_affinity_none_leaves_the_placement_to_linux(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    args = ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--grpc_workers", "2"]
    process = ServerProcess([*args, "--worker_affinity", "none"], tmp_path / "log", wait_ready=False)
    try:
        wait_for(lambda: process.log().count("Server ready") == 2 or process.process.poll() is not None)
        for pid in _worker_pids(process.log()):
            assert _allowed_cores(pid, pid) == os.sched_getaffinity(0)
        assert "pinned to cores" not in process.log()
    finally:
        process.stop()


def test_a_single_process_leaves_openvino_every_core(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    process = ServerProcess(["--model_name", "dummy", "--model_path", str(tmp_path / "dummy")], tmp_path / "log")
    try:
        log = process.log()
        assert "CPU threads in this process" not in log
        assert f"model dummy version 1: OpenVINO streams 1, threads {len(os.sched_getaffinity(0))}" in log, log
    finally:
        process.stop()


@pytest.fixture
def controlled_workers(tmp_path):
    """Two workers serving config.json's `dummy`, model control on, no polling (only explicit calls change them)."""
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [_entry("dummy")]}))
    args = ["--config_path", str(tmp_path / "config.json"), "--grpc_workers", "2", "--allow_model_control"]
    process = ServerProcess([*args, "--file_system_poll_wait_seconds", "0"], tmp_path / "log", wait_ready=False)
    wait_for(lambda: process.log().count(EVERY_READY) == 2 or process.process.poll() is not None)
    yield process
    process.stop()


def _entry(name: str) -> dict:
    return {"config": {"name": name, "base_path": "dummy"}}


def _ready_through_new_connections(address: str, name: str, connections: int = 16) -> set[bool]:
    """ModelReady of `name` asked over `connections` connections of their own (the kernel spreads them over the
    workers: sixteen all reach the same one with a chance of 1 in 32,768)."""
    answers = set()
    for _ in range(connections):
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            try:
                answers.add(stub.ModelReady(service_pb2.ModelReadyRequest(name=name), timeout=10).ready)
            except grpc.RpcError as error:  # an unloaded model has no available version: NOT_FOUND, as in OVMS
                assert error.code() == grpc.StatusCode.NOT_FOUND, error
                answers.add(False)
    return answers


def test_a_load_or_unload_through_one_connection_is_seen_through_all(controlled_workers):
    stub = controlled_workers.stub
    stub.RepositoryModelUnload(service_pb2.RepositoryModelUnloadRequest(model_name="dummy"), timeout=60)
    assert _ready_through_new_connections(controlled_workers.address, "dummy") == {False}
    stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="dummy"), timeout=60)
    assert _ready_through_new_connections(controlled_workers.address, "dummy") == {True}
    with pytest.raises(grpc.RpcError) as failed:  # refused by every worker alike: one answer
        stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="nowhere"), timeout=60)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND and "nowhere" in failed.value.details()


def test_a_replacement_worker_applies_the_explicit_calls_before_it_is_ready(controlled_workers):
    controlled_workers.stub.RepositoryModelUnload(
        service_pb2.RepositoryModelUnloadRequest(model_name="dummy"), timeout=60
    )
    first = _worker_pids(controlled_workers.log())[0]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: re.search(REPLACED.format(dead=first, n=1), controlled_workers.log()) is not None)
    replacement = int(re.search(REPLACED.format(dead=first, n=1), controlled_workers.log()).group(1))
    wait_for(lambda: f"[{replacement}]{EVERY_READY}" in controlled_workers.log())
    assert _ready_through_new_connections(controlled_workers.address, "dummy") == {False}


def test_a_config_reload_is_applied_by_every_worker_before_it_answers(controlled_workers, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_config_list": [_entry("dummy"), _entry("second")]}))
    connection = http.client.HTTPConnection(controlled_workers.rest_address, timeout=60)
    connection.request("POST", "/v1/config/reload")
    assert connection.getresponse().status == 201  # applied, and something changed (OVMS's answer)
    connection.close()
    assert _ready_through_new_connections(controlled_workers.address, "second") == {True}


@pytest.fixture
def counting_workers(tmp_path):
    """Two workers with metrics on."""
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    args = ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--grpc_workers", "2"]
    process = ServerProcess([*args, "--metrics_enable"], tmp_path / "log", wait_ready=False)
    wait_for(lambda: process.log().count(EVERY_READY) == 2 or process.process.poll() is not None)
    yield process
    process.stop()


SUCCESS = 'ovms_requests_success{api="KServe",interface="gRPC",method="ModelInfer",name="dummy",version="1"}'


def _scrape(rest_address: str) -> str:
    connection = http.client.HTTPConnection(rest_address, timeout=30)  # a connection of its own: any worker
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def _sample(text: str, series: str) -> float:
    found = [line.rpartition(" ")[2] for line in text.splitlines() if line.startswith(series + " ")]
    assert len(found) == 1, (series, text)
    return float(found[0])


def _success_count(address: str) -> int:
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelStatistics(service_pb2.ModelStatisticsRequest(name="dummy"), timeout=30)
    return response.model_stats[0].inference_stats.success.count


def test_metrics_and_statistics_are_the_whole_servers_on_every_scrape(counting_workers):
    _infer_over_new_connections(counting_workers.address, 20)  # spread over both workers
    for _ in range(6):  # each scrape and each statistics call lands on either worker: the same sums
        assert _sample(_scrape(counting_workers.rest_address), SUCCESS) == 20
        assert _success_count(counting_workers.address) == 20
    text = _scrape(counting_workers.rest_address)
    assert text.count("# TYPE ovms_requests_success counter") == 1
    assert merge_expositions([text]) == text  # a sum of one is the text as one process writes it
    assert _sample(text, 'ovms_current_requests{name="dummy",version="1"}') == 0


def test_counters_never_go_backwards_when_a_worker_is_replaced(counting_workers):
    _infer_over_new_connections(counting_workers.address, 20)
    assert _sample(_scrape(counting_workers.rest_address), SUCCESS) == 20
    assert _success_count(counting_workers.address) == 20
    first = _worker_pids(counting_workers.log())[0]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: re.search(REPLACED.format(dead=first, n=1), counting_workers.log()) is not None)
    replacement = int(re.search(REPLACED.format(dead=first, n=1), counting_workers.log()).group(1))
    wait_for(lambda: f"[{replacement}]{EVERY_READY}" in counting_workers.log())
    for _ in range(4):  # the ended worker's counts, as last scraped, stay in the sums
        assert _sample(_scrape(counting_workers.rest_address), SUCCESS) == 20
        assert _success_count(counting_workers.address) == 20
    _infer_over_new_connections(counting_workers.address, 4)
    assert _sample(_scrape(counting_workers.rest_address), SUCCESS) == 24


def _client(address: str) -> grpcclient.InferenceServerClient:
    """A tritonclient client with a TCP connection of its own: clients in one process otherwise share one, and so
    reach one worker (grpc's global subchannel pool; docs/scaling.md)."""
    return grpcclient.InferenceServerClient(address, channel_args=[("grpc.use_local_subchannel_pool", 1)])


def test_a_region_registered_through_one_connection_is_used_through_all(tmp_path):
    models.build_dummy(tmp_path / "dummy" / "1" / "model.xml")
    args = ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--grpc_workers", "2"]
    process = ServerProcess([*args, "--allow_client_shm"], tmp_path / "log", wait_ready=False)
    values = np.arange(10, dtype=np.float32).reshape(1, 10)
    handle = shm.create_shared_memory_region("input", f"/pyovms_workers_{os.getpid()}", values.nbytes)
    shm.set_shared_memory_region(handle, [values])
    try:
        wait_for(lambda: process.log().count(EVERY_READY) == 2 or process.process.poll() is not None)
        first = _client(process.address)
        first.register_system_shared_memory("input", f"/pyovms_workers_{os.getpid()}", values.nbytes)
        for _ in range(16):  # new connections, spread over both workers: each finds the region
            client = _client(process.address)
            tensor = grpcclient.InferInput("b", [1, 10], "FP32")
            tensor.set_shared_memory("input", values.nbytes)
            np.testing.assert_array_equal(client.infer("dummy", [tensor]).as_numpy("a"), values + 1)
            assert list(client.get_system_shared_memory_status().regions) == ["input"]
            client.close()
        first.unregister_system_shared_memory("input")
        for _ in range(8):
            client = _client(process.address)
            assert list(client.get_system_shared_memory_status().regions) == []
            client.close()
        first.close()
    finally:
        shm.destroy_shared_memory_region(handle)
        process.stop()


def _connection_owners(port: int, pids: list[int]) -> Counter[int]:
    """How many established connections to `port` each of `pids` holds, read from the kernel's socket tables and each
    process's file descriptors."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rpartition(":")[2], 16) == port:  # 01: ESTABLISHED
                inodes.add(fields[9])
    owners: Counter[int] = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # a descriptor closed meanwhile
                target = os.readlink(fd)
                owners[pid] += target.startswith("socket:[") and target[len("socket:[") : -1] in inodes
    return owners


def test_clients_with_a_connection_of_their_own_reach_every_worker(two_workers):
    """docs/scaling.md's example, run as written (eight clients at a time, until both workers hold some of their
    connections: each connection goes to either worker, so a few rounds settle it)."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    start = docs.index("```python", docs.index("Give each client a connection of its own")) + len("```python")
    example = textwrap.dedent(docs[start : docs.index("```", start)])
    pids = _worker_pids(two_workers.log())
    before = _connection_owners(two_workers.port, pids)
    opened: list[grpcclient.InferenceServerClient] = []
    try:
        for _ in range(8):
            namespace: dict = {}
            exec(example.replace("127.0.0.1:9000", two_workers.address), namespace)  # as written
            opened += namespace["clients"]
            assert all(client.is_server_ready() for client in namespace["clients"])  # each connects
            gained = _connection_owners(two_workers.port, pids) - before
            if len(gained) == 2:
                break
        assert set(gained) == set(pids) and sum(gained.values()) == len(opened), (gained, len(opened))
    finally:
        for client in opened:
            client.close()


def test_sigterm_lets_every_workers_requests_in_flight_finish(tmp_path):
    """SIGTERM to the supervisor while an inference runs in a worker (seen running: the server's summed
    `ovms_infer_req_active` is 1): it finishes and is answered, and every process exits with 0."""
    models.build_slow_to_infer(tmp_path / "slow" / "1" / "model.xml")
    process = ServerProcess(
        ["--model_name", "slow", "--model_path", str(tmp_path / "slow"), "--grpc_workers", "2",
         "--shutdown_grace_seconds", "60", *SLOW_ARGS],
        tmp_path / "log", wait_ready=False,
    )  # fmt: skip
    try:
        wait_for(lambda: process.log().count(EVERY_READY) == 2 or process.process.poll() is not None)
        pids = _worker_pids(process.log())
        call = InFlight(process)
        call.start_and_see_running()
        process.process.send_signal(signal.SIGTERM)
        call.answer()
        process.channel.close()  # the last client leaves: no need to wait for the rest of the grace period
        assert process.process.wait(60) == 0
        assert not any(_alive(pid) for pid in pids)
        assert process.log().count("Shutting down: not ready") == 2
    finally:
        process.stop()
