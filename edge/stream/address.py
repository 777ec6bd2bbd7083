"""Where the stream is served: a Unix socket path, or a loopback TCP host:port (with a shared secret)."""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

from ..errors import InputError

DEFAULT_SOCKET = Path("/run/minicpmv-edge/tokens.sock")
DEFAULT_LISTEN = "127.0.0.1:8089"  # the LLM process's API


class Address(NamedTuple):
    """A Unix socket (`path`) or a TCP endpoint (`host`, `port`)."""

    path: Optional[Path] = None
    host: Optional[str] = None
    port: int = 0

    @property
    def is_tcp(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return "tcp://%s:%d" % (self.host, self.port) if self.is_tcp else "unix:%s" % self.path


def tcp_address(text: str, key: str = "tcp") -> Address:
    """`host:port` on loopback (127.0.0.0/8, ::1 as [::1]:port, or localhost); anything else is refused."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError("%s must be host:port with a port in 1..65535, got %r" % (key, text))
    if not is_loopback(host):
        raise InputError("%s: %s is not a loopback address: the stream is served on 127.0.0.1 or ::1 only "
                         "(use a Unix socket, or an SSH tunnel, to reach it from elsewhere)" % (key, host))
    return Address(host=host, port=int(port))


def listen_address(text: str, key: str = "--listen") -> Tuple[str, int]:
    """A server's `host:port` ([::1]:port for IPv6) -> (host, port); any host, port 0 = any free port."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError("%s must be HOST:PORT with a port in 0..65535, got %r" % (key, text))
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(path: Path) -> bytes:
    """The shared secret of TCP mode: the file's first line, at least 16 characters."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise InputError("stream.secret_file: cannot read %s (%s): create it (for example `head -c 32 /dev/urandom "
                         "| base64 > %s; chmod 600 %s`)" % (path, exc.strerror or exc, path, path)) from exc
    if len(secret) < 16:
        raise InputError("stream.secret_file: %s holds %d characters, fewer than 16: write a longer random secret"
                         % (path, len(secret)))
    return secret


def connect(address: Address, timeout_s: float) -> socket.socket:
    """A connected socket to `address` (OSError when nothing listens there)."""
    if address.is_tcp:
        return socket.create_connection((address.host, address.port), timeout=timeout_s)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(address.path))
    except OSError:
        sock.close()
        raise
    return sock
