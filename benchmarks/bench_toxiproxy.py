"""Throughput of the embedded Toxiproxy (no toxics) against a direct connection to the same upstream.

Run: ``.venv/bin/python benchmarks/bench_toxiproxy.py [--mb 200] [--runs 3]``. For each direction it
moves ``--mb`` megabytes over loopback TCP, best of ``--runs``, and prints MB/s direct, MB/s through the
proxy, and the ratio. Not a timed test: the figures are for reading, not for asserting.

A proxy that forwards nothing, or a port that bypasses it, would be fast, so the figures stand only
when every transfer delivered all its bytes (the upstream reports what it received on uploads), and
when the measured port is the proxy's own: with a ``limit_data`` toxic on it, a download through it
stops at the limit. Otherwise the benchmark exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.toxiproxy.client import ToxiproxyClient  # noqa: E402
from harness.toxiproxy.server import EmbeddedToxiproxyThread  # noqa: E402

BLOCK = b"\x5a" * (256 * 1024)
MB = 1_000_000
# Loopback moves hundreds of MB/s; a transfer that stalls this long is a proxy that forwards nothing.
STALL_S = 30.0
PATH_LIMIT_BYTES = 1000


class Upstream:
    """Per connection: ``download`` sends N bytes then closes; ``upload`` reads N bytes (or to EOF) and
    answers how many it received."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.mode = "download"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        with conn, contextlib.suppress(ConnectionError):  # the path check cuts its download short
            if mode == "download":
                left = self.total
                while left > 0:
                    n = min(left, len(BLOCK))
                    conn.sendall(BLOCK[:n])
                    left -= n
            else:
                got = 0
                while got < self.total:
                    data = conn.recv(1 << 20)
                    if not data:
                        break
                    got += len(data)
                conn.sendall(str(got).encode())


def received(port: int) -> int:
    """Bytes read from the port until the far side closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=STALL_S) as sock:
        got = 0
        while True:
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                break
            got += len(data)
    return got


def download(port: int, total: int) -> float:
    started = time.perf_counter()
    got = received(port)
    elapsed = time.perf_counter() - started
    if got != total:
        raise SystemExit(f"download through port {port}: received {got} of {total} bytes: "
                         "the transfer delivered nothing like what was sent; the figure measures nothing")
    return elapsed


def upload(port: int, total: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=STALL_S) as sock:
        left = total
        while left > 0:
            n = min(left, len(BLOCK))
            sock.sendall(BLOCK[:n])
            left -= n
        try:  # (no half-close: Toxiproxy, like the real one, closes both ways on a client's EOF)
            answer = sock.recv(64)
        except TimeoutError:
            answer = b""
    elapsed = time.perf_counter() - started
    if answer != str(total).encode():
        raise SystemExit(f"upload through port {port}: the upstream reports {answer.decode() or 'nothing'} of "
                         f"{total} bytes: the transfer delivered nothing like what was sent; "
                         "the figure measures nothing")
    return elapsed


def best(fn: Callable[[int, int], float], port: int, total: int, runs: int) -> float:
    return min(fn(port, total) for _ in range(runs))


def proxied_port(client: ToxiproxyClient, upstream: Upstream) -> int:
    return int(client.create_proxy("bench", "127.0.0.1:0", upstream.address).rpartition(":")[2])


def check_path(client: ToxiproxyClient, port: int, upstream: Upstream) -> None:
    """The measured port is the proxy: a limit_data toxic on it cuts a download at its limit."""
    upstream.mode = "download"
    name = client.add_limit_data("bench", PATH_LIMIT_BYTES)
    try:
        got = received(port)
    finally:
        client.remove_toxic("bench", name)
    if got != PATH_LIMIT_BYTES:
        raise SystemExit(f"port {port} ignored a limit_data toxic of {PATH_LIMIT_BYTES} bytes (received {got}): "
                         "the proxied figures did not go through the proxy; they measure nothing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="megabytes per transfer (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="transfers per measurement, best counts (default 3)")
    args = parser.parse_args(argv)
    total = args.mb * MB
    upstream = Upstream(total)
    direct_port = int(upstream.address.rpartition(":")[2])
    with EmbeddedToxiproxyThread() as server:
        client = ToxiproxyClient(server.url)
        proxy_port = proxied_port(client, upstream)
        print(f"embedded Toxiproxy throughput, no toxics, {args.mb} MB per transfer, best of {args.runs}")
        print(f"{'direction':<26}{'direct MB/s':>14}{'proxied MB/s':>14}{'ratio':>8}")
        for mode, fn, label in (
            ("download", download, "downstream (server->client)"),
            ("upload", upload, "upstream (client->server)"),
        ):
            upstream.mode = mode
            direct = total / MB / best(fn, direct_port, total, args.runs)
            proxied = total / MB / best(fn, proxy_port, total, args.runs)
            print(f"{label:<26}{direct:>14.1f}{proxied:>14.1f}{proxied / direct:>8.2f}")
        check_path(client, proxy_port, upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
