"""The run's own check that nothing connects outside the machine (tests/support/network_guard.py)."""

from __future__ import annotations


def test_the_network_guard_reads_the_kernels_tables():
    """tests/support/network_guard.py: addresses as /proc/net/{tcp,udp}[6] write them; only connected rows to addresses outside
    the loopback network count; a sample of this process's loopback connection records nothing."""
    import socket

    from .support.network_guard import NetworkGuard, outbound_sockets, remote_address

    assert str(remote_address("0100007F:1F90")) == "127.0.0.1"
    assert str(remote_address("0A00020F:01BB")) == "15.2.0.10"
    assert str(remote_address("00000000000000000000000001000000:0050")) == "::1"
    assert str(remote_address("0000000000000000FFFF00000100007F:0050")) == "127.0.0.1"  # IPv4-mapped
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    rows = [
        header,
        "   0: 0100007F:9C40 0A00020F:01BB 01 00000000:00000000 00:00000000 00000000  0 0 111 1",  # established, outside
        "   1: 0100007F:9C41 0A00020F:01BB 02 00000000:00000000 00:00000000 00000000  0 0 112 1",  # SYN_SENT, outside
        "   2: 0100007F:9C42 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  0 0 113 1",  # loopback
        "   3: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 114 1",  # listening
        "   4: 0100007F:9C43 0A00020F:01BB 06 00000000:00000000 00:00000000 00000000  0 0 115 1",  # TIME_WAIT
    ]
    assert outbound_sockets(rows, "tcp") == {111: "15.2.0.10:443", 112: "15.2.0.10:443"}
    guard = NetworkGuard()
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()):
        guard.sample()
    assert guard.seen == set()
