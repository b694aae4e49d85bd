"""The test run's own check that nothing leaves the machine: a thread samples the kernel's TCP and UDP tables while the
tests run and records every connection that pytest, or any process it started (servers, storage emulators, tools),
has open to an address outside the loopback network. conftest.py fails the run when one was seen.

Sampling every 0.2 s catches connections that last longer than that (a TCP connection attempt to an address that
does not answer lasts seconds, telemetry uploads and SDK metadata probes hold theirs open while they wait); a
connection opened and closed between two samples can slip through. Linux only (elsewhere nothing is recorded)."""

from __future__ import annotations

import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path

SAMPLE_S = 0.2
TABLES = ("tcp", "tcp6", "udp", "udp6")
CONNECTED = {"01", "02", "03"}
"""TCP ESTABLISHED, SYN_SENT, SYN_RECV; in the UDP tables, 01 marks a connected socket."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """A socket of the test run connected to an address outside the machine."""

    table: str
    remote: str
    command: str


def remote_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address part of /proc/net/{tcp,udp}[6]'s `rem_address` column (little-endian 32-bit words)."""
    host = hex_address.split(":")[0]
    words = [bytes.fromhex(host[i : i + 8])[::-1] for i in range(0, len(host), 8)]
    address = ipaddress.ip_address(b"".join(words))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_outside(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (address.is_loopback or address.is_unspecified)


def outbound_sockets(lines: list[str], table: str) -> dict[int, str]:
    """Socket inode -> remote `address:port` of the rows of one table connected outside the machine."""
    found = {}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] not in CONNECTED:
            continue
        address = remote_address(fields[2])
        if is_outside(address):
            found[int(fields[9])] = f"{address}:{int(fields[2].rsplit(':', 1)[1], 16)}"
    return found


def _children(root: int) -> set[int]:
    """`root` and every process it started, directly or not."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return family


def _sockets_of(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return f"pid {pid}"


class NetworkGuard:
    """Samples the tables until `stop`; `seen` holds what it found."""

    def __init__(self) -> None:
        self.seen: set[Outbound] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="network-guard", daemon=True)

    def start(self) -> NetworkGuard:
        if Path("/proc/net/tcp").exists():
            self._thread.start()
        return self

    def stop(self) -> set[Outbound]:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(10)
        return self.seen

    def _run(self) -> None:
        while not self._stopped.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        outside: dict[int, tuple[str, str]] = {}
        for table in TABLES:
            try:
                lines = Path(f"/proc/net/{table}").read_text().splitlines()
            except OSError:
                continue
            outside.update({inode: (table, remote) for inode, remote in outbound_sockets(lines, table).items()})
        if not outside:
            return
        for pid in _children(os.getpid()):
            for inode in _sockets_of(pid) & outside.keys():
                table, remote = outside[inode]
                self.seen.add(Outbound(table, remote, _command(pid)))
