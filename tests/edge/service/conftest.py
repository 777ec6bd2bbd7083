"""A notify socket the tests own, as systemd's would be: bound in a short folder, read by the test."""
from __future__ import annotations

import socket

import pytest


@pytest.fixture
def notify_socket(sock_dir):
    """(path, the bound AF_UNIX datagram socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(sock_dir / "notify")
    sock.bind(path)
    yield path, sock
    sock.close()
