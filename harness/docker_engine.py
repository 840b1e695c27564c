"""Does a Docker engine answer? :func:`docker_ping`, for the services' ``docker`` step and trivy's image.

A raw ``GET /_ping`` on the socket the Docker CLI would use (``DOCKER_HOST``, else
/var/run/docker.sock), so no Docker SDK is loaded to learn that there is no engine.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

DOCKER_PING_TIMEOUT_S = 2.0


class _Unsupported(Exception):
    """``DOCKER_HOST`` names an engine this probe does not talk to (the message says which and why)."""


def _docker_endpoint(env: Mapping[str, str]) -> tuple[str, Any]:
    """('unix', path) or ('tcp', (host, port)) for the engine the Docker CLI would talk to."""
    docker_host = env.get("DOCKER_HOST", "").strip()
    if not docker_host:
        return "unix", "/var/run/docker.sock"
    if docker_host.startswith("unix://"):
        return "unix", docker_host[len("unix://") :]
    if docker_host.startswith("tcp://"):
        if env.get("DOCKER_TLS_VERIFY"):
            raise _Unsupported(
                f"DOCKER_HOST={docker_host} uses TLS (DOCKER_TLS_VERIFY); TLS engines are not probed"
            )
        parts = urlsplit(docker_host)
        return "tcp", (parts.hostname or "127.0.0.1", parts.port or 2375)
    raise _Unsupported(f"DOCKER_HOST={docker_host!r}: only unix:// and tcp:// engines are supported")


def docker_ping(env: Mapping[str, str] | None = None, timeout: float = DOCKER_PING_TIMEOUT_S) -> tuple[bool, str]:
    """Does a Docker engine answer ``GET /_ping`` within ``timeout`` seconds in total? -> (ok, reason).

    A raw socket, no Docker SDK: the whole probe (connect, send, read) shares one deadline.
    """
    env = os.environ if env is None else env
    try:
        kind, address = _docker_endpoint(env)
    except _Unsupported as exc:
        return False, str(exc)
    where = f"unix://{address}" if kind == "unix" else f"tcp://{address[0]}:{address[1]}"
    if kind == "unix" and not os.path.exists(address):
        return False, f"no Docker engine: {address} does not exist"
    deadline = time.monotonic() + timeout
    started = time.monotonic()

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    sock = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(remaining())
        sock.connect(address)
        sock.settimeout(remaining())
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\nUser-Agent: gameday\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer and len(answer) < 4096:
            sock.settimeout(remaining())
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except TimeoutError:
        return False, f"Docker engine at {where} did not answer /_ping within {timeout:g} s"
    except OSError as exc:
        return False, f"no Docker engine at {where}: {exc.strerror or exc}"
    finally:
        sock.close()
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = status_line.split()
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1] == "200":
        elapsed_ms = (time.monotonic() - started) * 1000
        return True, f"Docker engine at {where} answered /_ping in {elapsed_ms:.0f} ms"
    return False, f"Docker engine at {where} answered /_ping with {status_line or 'nothing'!r}"
