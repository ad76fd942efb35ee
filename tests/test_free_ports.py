"""Ports for the site's servers come from below the kernel's ephemeral range, where no
outgoing connection can take them between the probe and the server's bind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ledger_node.demo.localsite import free_port, free_ports

RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def test_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low = int(RANGE.read_text().split()[0]) if RANGE.exists() else 32_768
    for _ in range(50):
        port = free_port()
        assert 10_000 <= port < low
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_consecutive_ports_are_all_free() -> None:
    base = free_ports(4)
    servers = [socket.socket() for _ in range(4)]
    try:
        for offset, server in enumerate(servers):
            server.bind(("127.0.0.1", base + offset))
    finally:
        for server in servers:
            server.close()


def test_a_taken_port_is_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every port but one taken (bind refused), that one is what comes back."""
    import ledger_node.demo.localsite as localsite

    picks = iter([20_001, 20_002, 20_003])
    taken = {20_001, 20_002}
    real = socket.socket

    class Probe(real):  # type: ignore[misc, valid-type]
        def bind(self, address: object) -> None:
            if isinstance(address, tuple) and address[1] in taken:
                raise OSError("address already in use")
            super().bind(address)

    monkeypatch.setattr(localsite.random, "randint", lambda a, b: next(picks))
    monkeypatch.setattr(localsite.socket, "socket", Probe)
    assert localsite.free_port() == 20_003
