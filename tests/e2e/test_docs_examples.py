"""Every fenced code block of README.md and docs/*.md is accounted for, and the runnable ones run here as written.

The rule, enforced by `test_every_block_is_accounted_for`:

- A block tagged ```text is not an example (a picture, a log, an output) and carries no marker.
- Every other block, untagged ones included, has one marker on the line right above its fence:
  - `<!-- example: run -->`: a bash or python block that `DocRun` below runs, in document order;
  - `<!-- example: file PATH -->`: a file (a config.json, a graph.pbtxt, a handler) that `DocRun` writes to PATH in
    the doc's working directory, for the blocks after it to use;
  - `<!-- example: tested by tests/test_x.py::test_y -->`: run as written by that test, which must exist (its module
    must name the doc);
  - `<!-- example: not run: REASON -->`: cannot run here (Docker, a Kubernetes cluster, AWS, a benchmark, the whole
    test suite).
  A block with no marker fails that test, which names its file and line.

How `DocRun` runs a doc's `run` and `file` blocks, each doc in a working directory of its own:

- The directory holds a link to the repository's `examples/` (the docs' commands run from the repository's root);
  HOME is a directory of this module's in which the demo repository has been built (what `pyovms --demo` leaves in
  ~/.cache/pyovms/demo, which the examples copy models from); this venv's bin comes first on PATH.
- `as_run` is the one change made to a block before it runs: the documented ports, gRPC 9000 and REST 8000, become
  free ports of the test's (the servers bound to 127.0.0.1), and MinIO's 127.0.0.1:9100 the test's S3 server.
- bash: each command (a line, and the lines that continue it after a `\\` or inside quotes) runs with bash and must
  exit 0. A `pyovms` command is a server, as in a terminal of its own: started, waited for until ServerReady, left
  serving the next commands and blocks, and stopped when a later command takes its port or the doc is done. Comment
  lines right after a command, beginning `# {` and continued by `#   ` lines, are its documented output: it must print
  that (`...` stands for any text). `pip install` commands are checked, not run: the tests run in the environment
  they produce, and installing again would replace the package under test; they must install this project (`.`,
  `pyovms`) with extras that pyproject.toml defines.
- python: executed in this process, in the working directory, its output captured (the tritonclient clients it
  leaves open are closed afterwards, as the interpreter's exit would).

Each doc's test then checks what its examples did: the servers' models, the answers, the state left behind.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from pyovms.repository.demo import build_demo_repository

from ..support.server_process import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
X = np.arange(10, dtype=np.float32).reshape(1, 10)

# ------------------------------------------------------------------------------------------------ the blocks


@dataclass
class Block:
    doc: str  # relative to the repository's root
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: str | None  # what follows "example:" in the marker above the fence

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<what>.*?)\s*-->\s*$")


def parse_blocks(doc: str, text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, with the marker on the line above each."""
    lines, blocks, index = text.splitlines(), [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = index + 1
        while end < len(lines) and not re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]):
            end += 1
        body = "".join(line.removeprefix(indent) + "\n" for line in lines[index + 1 : end])
        above = MARKER.match(lines[index - 1]) if index else None
        language = opening["info"].strip().split(" ")[0]
        blocks.append(Block(doc, index + 1, language, body, above["what"] if above else None))
        index = end + 1
    return blocks


def doc_blocks(path: Path) -> list[Block]:
    return parse_blocks(path.relative_to(ROOT).as_posix(), path.read_text())


def marker_problems(block: Block) -> list[str]:
    """What is wrong with a block's marker (nothing for a well-marked block or a ```text block)."""
    where = f"{block.where}: a ```{block.language or '(untagged)'} block"
    if block.language == "text":
        return [f"{where} has a marker, but text blocks are not examples"] if block.marker is not None else []
    if block.marker is None:
        return [
            f"{where} has no marker: put <!-- example: run -->, <!-- example: file PATH -->, <!-- example: tested by "
            "tests/test_x.py::test_y --> or <!-- example: not run: REASON --> on the line above its fence, or tag "
            "it ```text if it is not an example"
        ]
    kind, _, rest = block.marker.partition(" ")
    if block.marker == "run":
        return [] if block.language in ("bash", "python") else [f"{where}: only bash and python blocks are run"]
    if kind == "file":
        path = Path(rest.strip())
        return [] if rest.strip() and not path.is_absolute() and ".." not in path.parts else [f"{where}: bad {rest!r}"]
    if block.marker.startswith("tested by "):
        return reference_problems(where, block.doc, block.marker.removeprefix("tested by "))
    if block.marker.startswith("not run:"):
        return [] if block.marker.removeprefix("not run:").strip() else [f"{where}: not run, but no reason given"]
    return [f"{where}: unknown marker {block.marker!r}"]


def reference_problems(where: str, doc: str, reference: str) -> list[str]:
    module, _, name = reference.partition("::")
    path = ROOT / module
    if not (module.startswith("tests/") and path.is_file() and name.startswith("test_")):
        return [f"{where}: tested by {reference!r}, which names no test module and function"]
    source = path.read_text()
    functions = {node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    if name not in functions:
        return [f"{where}: tested by {reference!r}, but {module} has no function {name}"]
    if Path(doc).name not in source:
        return [f"{where}: tested by {reference!r}, but {module} does not name {doc}"]
    return []


# ------------------------------------------------------------------------------------------------ running them


@dataclass
class Ports:
    grpc: int = field(default_factory=free_port)
    rest: int = field(default_factory=free_port)
    s3: int | None = None


def as_run(text: str, ports: Ports) -> str:
    """The one change made to an example before it runs: the documented ports become the test's own (and the servers
    listen on 127.0.0.1 only); MinIO's documented address becomes the test's S3 server."""
    text = re.sub(r"--port 9000\b", f"--port {ports.grpc} --grpc_bind_address 127.0.0.1", text)
    text = re.sub(r"--rest_port 8000\b", f"--rest_port {ports.rest} --rest_bind_address 127.0.0.1", text)
    text = re.sub(r"\b(?:127\.0\.0\.1|localhost):9000\b", f"127.0.0.1:{ports.grpc}", text)
    text = re.sub(r"\b(?:127\.0\.0\.1|localhost):8000\b", f"127.0.0.1:{ports.rest}", text)
    if ports.s3 is not None:
        text = re.sub(r"\b127\.0\.0\.1:9100\b", f"127.0.0.1:{ports.s3}", text)
    return text


@dataclass
class Command:
    text: str
    line: int  # in the doc
    output: str | None  # documented output, `...` for any text


def shell_commands(block: Block) -> list[Command]:
    """A bash block's commands (continuation lines joined), each with the output documented under it."""
    lines, commands, index = block.text.splitlines(), [], 0
    while index < len(lines):
        if not lines[index].strip() or lines[index].lstrip().startswith("#"):
            index += 1
            continue
        start = index
        while index + 1 < len(lines) and not complete("\n".join(lines[start : index + 1])):
            index += 1
        index += 1
        text, output = "\n".join(lines[start:index]), None
        if index < len(lines) and lines[index].startswith("# {"):
            output = lines[index][1:].strip()
            index += 1
            while index < len(lines) and lines[index].startswith("#   "):
                output += lines[index][1:].strip()
                index += 1
        commands.append(Command(text, block.line + 1 + start, output))
    return commands


def complete(command: str) -> bool:
    """Whether bash reads `command` as a whole command: no trailing `\\`, no quote left open."""
    try:
        shlex.split(command)
    except ValueError:
        return False
    return not command.rstrip().endswith("\\")


def check_pip_install(command: str, where: str) -> str:
    """Check a `pip install` (this project, extras pyproject.toml defines) instead of running it; what follows `&&`."""
    install, _, rest = command.partition(" && ")
    words = shlex.split(install)
    assert words[:2] == ["pip", "install"], f"{where}: {install}"
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for requirement in (word for word in words[2:] if word != "-e"):
        match = re.fullmatch(r"(?:\.|pyovms)(?:\[(?P<extras>[\w,-]+)\])?", requirement)
        assert match, f"{where}: pip installs {requirement!r}, not this project"
        unknown = set((match["extras"] or "").split(",")) - extras - {""}
        assert not unknown, f"{where}: pyproject.toml has no extra {sorted(unknown)}"
    return rest


class Server:
    """A `pyovms` command of an example, running; what it served once ready."""

    def __init__(self, command: str, port: int, where: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.port, self.where, self.log_path = port, where, log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            wait_for(lambda: self._ready(stub), timeout=90)
            index = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
            self.models = {model.name: model.state for model in index.models}
            self.inputs = {}
            for name, state in self.models.items():
                if state == "READY":
                    metadata = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=name), timeout=10)
                    self.inputs[name] = [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs]
        except BaseException:
            self.stop()
            raise
        finally:
            channel.close()

    @staticmethod
    def port_of(command: str, where: str) -> int:
        words = shlex.split(command)
        assert "--port" in words, f"{where}: a pyovms server without --port"
        return int(words[words.index("--port") + 1])

    def _ready(self, stub: service_pb2_grpc.GRPCInferenceServiceStub) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.where}: pyovms exited with {self.process.returncode}:\n{self.log()}")
        try:
            return stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=1).ready
        except grpc.RpcError:
            return False

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group of the bash this test started
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


@dataclass
class Ran:
    block: Block
    outputs: list[str] = field(default_factory=list)  # each command's (bash) or the block's (python)
    servers: list[Server] = field(default_factory=list)  # started by this block
    namespace: dict[str, Any] = field(default_factory=dict)  # python


class DocRun:
    """Runs one doc's `run` and `file` blocks in order, in `cwd`; stops its servers on leaving the `with` block."""

    def __init__(self, doc: str, home: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch, ports: Ports) -> None:
        self.doc, self.cwd, self.ports = doc, cwd, ports
        self.blocks = [b for b in doc_blocks(ROOT / doc) if b.marker == "run" or (b.marker or "").startswith("file ")]
        (cwd / "examples").symlink_to(ROOT / "examples")
        self.env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
        self.env.update(HOME=str(home), PYTHONUNBUFFERED="1")
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        monkeypatch.chdir(cwd)
        self.servers: dict[int, Server] = {}

    def __enter__(self) -> DocRun:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers.values():
            server.stop()

    def run(self) -> list[Ran]:
        return [self._run(block) for block in self.blocks]

    def _run(self, block: Block) -> Ran:
        ran = Ran(block)
        if block.marker.startswith("file "):
            path = self.cwd / block.marker.removeprefix("file ").strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
        elif block.language == "python":
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                exec(compile(as_run(block.text, self.ports), block.where, "exec"), ran.namespace)  # as written
            ran.outputs.append(output.getvalue())
            for value in ran.namespace.values():  # as the interpreter would on exit: the server sees them go
                if isinstance(value, grpcclient.InferenceServerClient):
                    value.close()
        else:
            for command in shell_commands(block):
                self._command(command, ran)
        return ran

    def _command(self, command: Command, ran: Ran) -> None:
        where, text = f"{self.doc}:{command.line}", as_run(command.text, self.ports)
        if text.startswith("pip install"):
            text = check_pip_install(text, where)
            if not text:
                return
        if re.match(r"(?:\w+=\S+\s+(?:\\\n\s*)?)*pyovms\s", text):
            port = Server.port_of(text, where)
            if port in self.servers:  # the earlier server leaves the port (in a terminal: Ctrl-C)
                self.servers.pop(port).stop()
            server = Server(text, port, where, self.cwd, self.env, self.cwd / f"server-{command.line}.log")
            self.servers[port] = server
            ran.servers.append(server)
            return
        result = subprocess.run(
            ["bash", "-c", text], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, f"{where}: exit {result.returncode}\n{text}\n{result.stdout}{result.stderr}"
        if command.output is not None:
            pattern = ".*".join(re.escape(part) for part in command.output.split("..."))
            assert re.fullmatch(pattern, result.stdout.strip(), re.S), (
                f"{where}: printed\n{result.stdout}\ndocumented\n{command.output}"
            )
        ran.outputs.append(result.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home directory holding the demo repository, as `pyovms --demo` builds it there."""
    home = tmp_path_factory.mktemp("home")
    build_demo_repository(home / ".cache" / "pyovms" / "demo")
    return home


def run_doc(doc: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ports: Ports | None = None):
    return DocRun(doc, home, tmp_path, monkeypatch, ports or Ports())


def client_of(server: Server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}")


# ------------------------------------------------------------------------------------------------ the registry


def test_every_block_is_accounted_for():
    problems, runnable = [], set()
    for path in DOCS:
        for block in doc_blocks(path):
            problems += marker_problems(block)
            if block.marker == "run" or (block.marker or "").startswith("file "):
                runnable.add(block.doc)
    assert not problems, "\n".join(problems)
    assert runnable == set(DOC_TESTS), f"docs with run blocks {sorted(runnable)}; docs with a test {sorted(DOC_TESTS)}"
    module = ast.parse(Path(__file__).read_text())
    defined = {node.name for node in module.body if isinstance(node, ast.FunctionDef)}
    assert set(DOC_TESTS.values()) <= defined


def test_an_unmarked_block_fails_naming_its_file_and_line():
    text = "# Doc\n\n```bash\necho hi\n```\n\n```text\na picture\n```\n\n"
    text += "<!-- example: not run: why -->\n```yaml\na: 1\n```\n"
    problems = [p for block in parse_blocks("docs/new.md", text) for p in marker_problems(block)]
    assert len(problems) == 1 and problems[0].startswith("docs/new.md:3: a ```bash block has no marker")
    tested = parse_blocks(
        "README.md", "<!-- example: tested by tests/e2e/test_cli.py::test_nothing -->\n```python\n```\n"
    )
    assert marker_problems(tested[0]) == [
        "README.md:2: a ```python block: tested by 'tests/e2e/test_cli.py::test_nothing', but tests/e2e/test_cli.py has no "
        "function test_nothing"
    ]


def test_as_run_changes_only_the_documented_ports():
    ports = Ports(grpc=1111, rest=2222, s3=3333)
    assert as_run("pyovms --demo --port 9000 --rest_port 8000", ports) == (
        "pyovms --demo --port 1111 --grpc_bind_address 127.0.0.1 --rest_port 2222 --rest_bind_address 127.0.0.1"
    )
    assert as_run('curl localhost:8000/v2 "127.0.0.1:9000" S3_ENDPOINT=127.0.0.1:9100 --port 90001', ports) == (
        'curl 127.0.0.1:2222/v2 "127.0.0.1:1111" S3_ENDPOINT=127.0.0.1:3333 --port 90001'
    )


# ------------------------------------------------------------------------------------------------ each doc


def test_readme_examples(home, tmp_path, monkeypatch):
    with run_doc("README.md", home, tmp_path, monkeypatch) as doc:
        demo, rest, serving = doc.run()
        (server,) = demo.servers
        assert server.models == {"dummy": "READY", "resnet": "READY"}
        assert f"{home}/.cache/pyovms/demo" in server.log()
        assert json.loads(rest.outputs[0])["outputs"][0]["data"] == (X + 1).ravel().tolist()
        one, many = serving.servers
        assert one.models == {"resnet": "READY"} and one.inputs["resnet"] == [("0", "FP32", [1, 224, 224, 3])]
        assert many.models == {"dummy": "READY", "resnet": "READY"}
        assert one.process.returncode == 0  # stopped by SIGTERM when the next server took the port
        assert (tmp_path / "models" / "config.json").is_file()  # the copy the two servers above served


def test_custom_nodes_examples(home, tmp_path, monkeypatch):
    from ..support.c_libraries import compiler

    compiler()  # the example is compiled with the system compiler: its absence is a failure, not a skip
    with run_doc("docs/custom_nodes.md", home, tmp_path, monkeypatch) as doc:
        _built, _config, served, _copied, _classify_config, classify = doc.run()
        assert (tmp_path / "example" / "nodes" / "libadd_one.so").is_file()
        assert served.servers[0].models == {"dummy": "READY", "plus_three": "READY"}
        assert json.loads(served.outputs[0])["outputs"][0]["data"] == (X + 3).ravel().tolist()
        (server,) = classify.servers
        assert server.models == {"classify": "READY", "dummy": "", "resnet": "READY"}  # dummy/: not in this config
        assert server.inputs["classify"] == [("image", "FP32", [1, 224, 224, 3])]
        client = client_of(server)
        image = grpcclient.InferInput("image", [1, 224, 224, 3], "FP32")
        image.set_data_from_numpy(np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32))
        classes = client.infer("classify", [image]).as_numpy("classes")
        scores = grpcclient.InferInput("0", [1, 224, 224, 3], "FP32")
        scores.set_data_from_numpy(np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32))
        expected = np.argsort(-client.infer("resnet", [scores]).as_numpy("1463"), axis=1, kind="stable")[:, :5]
        client.close()
        assert classes.dtype == np.int32 and classes.tolist() == expected.tolist()


def test_graphs_examples(home, tmp_path, monkeypatch):
    with run_doc("docs/graphs.md", home, tmp_path, monkeypatch) as doc:
        _config, _graph, _handler, served = doc.run()
        assert served.servers[0].models == {"shout": "READY", "upper": "READY"}
        assert json.loads(served.outputs[0])["outputs"] == [
            {"name": "result", "datatype": "BYTES", "shape": [2], "data": ["HELLO", "GRAPH WORLD"]}
        ]
        client = client_of(served.servers[0])  # gRPC: BYTES in raw_input_contents, framed by the client
        text = grpcclient.InferInput("text", [3], "BYTES")
        text.set_data_from_numpy(np.array([b"grpc", b"", "é a".encode()], dtype=np.object_))
        answer = client.infer("shout", [text])
        client.close()
        assert answer.as_numpy("result").tolist() == [b"GRPC", b"", "é A".encode()]


def test_model_repository_examples(home, tmp_path, monkeypatch):
    with run_doc("docs/model_repository.md", home, tmp_path, monkeypatch) as doc:
        served, client_calls = doc.run()
        assert served.servers[0].models == {"dummy": "READY", "newcomer": "", "resnet": "READY"}
        printed = ast.literal_eval(client_calls.outputs[0])
        assert printed == {
            "models": [
                {"name": "dummy", "version": "1", "state": "READY"},
                {"name": "newcomer"},
                {"name": "resnet", "version": "1", "state": "READY"},
            ]
        }
        client = client_of(served.servers[0])
        index = client.get_model_repository_index()
        states = {(m.name, m.version): (m.state, m.reason) for m in index.models}
        assert states == {
            ("dummy", "1"): ("READY", ""),
            ("newcomer", "1"): ("READY", ""),
            ("resnet", "1"): ("UNAVAILABLE", "unloaded"),
        }
        b = grpcclient.InferInput("b", [1, 10], "FP32")
        b.set_data_from_numpy(X)
        np.testing.assert_array_equal(client.infer("newcomer", [b]).as_numpy("a"), X + 1)
        client.close()


def test_python_api_examples(home, tmp_path, monkeypatch):
    with run_doc("docs/python_api.md", home, tmp_path, monkeypatch) as doc:
        (inference,) = doc.run()
    names = inference.namespace
    assert not names["server"].running
    assert set(names["outputs"]) == {"1463"} and names["outputs"]["1463"].shape == (1, 1000)
    assert abs(float(names["outputs"]["1463"].sum()) - 1) < 1e-3
    assert names["jpeg"]["1463"].shape == (1, 1000) and abs(float(names["jpeg"]["1463"].sum()) - 1) < 1e-3


@pytest.fixture
def s3_with_resnet(home, tmp_path):
    """A local S3 server (moto) with the demo's resnet in the bucket `models`, as the MinIO example expects."""
    import s3fs

    port = free_port()
    with open(tmp_path / "moto.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
        )
    try:
        fs = s3fs.S3FileSystem(endpoint_url=f"http://127.0.0.1:{port}", key="minio", secret="minio123")

        def answers() -> bool:
            try:
                fs.ls("")
                return True
            except OSError:
                return False

        wait_for(answers, timeout=60)
        fs.mkdir("models")
        demo = home / ".cache" / "pyovms" / "demo" / "resnet"
        for path in sorted(p for p in demo.rglob("*") if p.is_file()):
            fs.put_file(str(path), f"models/resnet/{path.relative_to(demo).as_posix()}")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def test_remote_storage_examples(home, tmp_path, monkeypatch, s3_with_resnet):
    work = tmp_path / "work"
    work.mkdir()
    with run_doc("docs/remote_storage.md", home, work, monkeypatch, Ports(s3=s3_with_resnet)) as doc:
        (minio,) = doc.run()
        (server,) = minio.servers
        assert server.models == {"resnet": "READY"}
        assert server.inputs["resnet"] == [("0", "FP32", [1, 3, 224, 224])]
        assert "s3://models/resnet" in server.log()


def test_shared_memory_examples(home, tmp_path, monkeypatch):
    assert not Path("/dev/shm/my_input").exists(), "a region of an earlier run is left: remove /dev/shm/my_input"
    with run_doc("docs/shared_memory.md", home, tmp_path, monkeypatch) as doc:
        served, example = doc.run()
        assert served.servers[0].models == {"dummy": "READY", "resnet": "READY"}
        assert example.outputs == ["[[ 1.  2.  3.  4.  5.  6.  7.  8.  9. 10.]]\n"]
        client = client_of(served.servers[0])
        assert client.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}
        client.close()
    assert not Path("/dev/shm/my_input").exists()


DOC_TESTS = {
    "README.md": "test_readme_examples",
    "docs/custom_nodes.md": "test_custom_nodes_examples",
    "docs/graphs.md": "test_graphs_examples",
    "docs/model_repository.md": "test_model_repository_examples",
    "docs/python_api.md": "test_python_api_examples",
    "docs/remote_storage.md": "test_remote_storage_examples",
    "docs/shared_memory.md": "test_shared_memory_examples",
}
"""The test that runs each doc's `run` and `file` blocks (all of them: it unpacks every block `DocRun` ran)."""
