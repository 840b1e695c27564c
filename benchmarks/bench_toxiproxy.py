"""Throughput of the embedded Toxiproxy (no toxics) against a direct connection to the same upstream.

Run: ``.venv/bin/python benchmarks/bench_toxiproxy.py [--mb 200] [--runs 3]``. For each direction it
moves ``--mb`` megabytes over loopback TCP, best of ``--runs``, and prints MB/s direct, MB/s through the
proxy, and the ratio. Not a timed test: the figures are for reading, not for asserting.
"""

from __future__ import annotations

import argparse
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


class Upstream:
    """Per connection: ``download`` sends N bytes then closes; ``upload`` reads to EOF then answers b"k"."""

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
        with conn:
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
                conn.sendall(b"k")


def download(port: int, total: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        got = 0
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            got += len(data)
    elapsed = time.perf_counter() - started
    if got != total:
        raise RuntimeError(f"received {got} bytes, expected {total}")
    return elapsed


def upload(port: int, total: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        left = total
        while left > 0:
            n = min(left, len(BLOCK))
            sock.sendall(BLOCK[:n])
            left -= n
        if sock.recv(1) != b"k":
            raise RuntimeError("upstream did not acknowledge the upload")
    return time.perf_counter() - started


def best(fn: Callable[[int, int], float], port: int, total: int, runs: int) -> float:
    return min(fn(port, total) for _ in range(runs))


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
        proxy_port = int(client.create_proxy("bench", "127.0.0.1:0", upstream.address).rpartition(":")[2])
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
