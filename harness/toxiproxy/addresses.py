"""host:port parsing and the loopback-only rule for proxy listeners."""

from __future__ import annotations

import ipaddress
import socket

from harness.toxiproxy.errors import ApiError


def split_hostport(value: str, what: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ApiError(400, f"invalid {what} address {value!r}: expected host:port")
    host, _, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ApiError(400, f"invalid {what} address {value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ApiError(400, f"invalid {what} address {value!r}: port must be 0..65535")
    return host, port


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_listen_host(host: str, allow_remote: bool) -> str:
    """The literal IP a proxy binds to. Loopback only unless the server allows remote listeners."""
    if host == "":
        return "0.0.0.0" if allow_remote else "127.0.0.1"  # nosec B104 - all interfaces only when remote listeners are allowed explicitly
    if host == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        literal = host
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ApiError(400, f"invalid listen address: cannot resolve host {host!r}: {exc}") from None
        literal = str(infos[0][4][0])
    if not allow_remote and not is_loopback(literal):
        raise ApiError(
            400,
            f"listen address {host!r} is not loopback; this server binds proxies to loopback only "
            "(start it with --allow-remote, or on a non-loopback --host, to allow it)",
        )
    return literal
