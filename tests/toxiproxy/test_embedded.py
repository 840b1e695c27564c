"""Behaviour specific to the embedded server: hosting (loop, thread, CLI process), loopback-only, seeding."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.toxiproxy.__main__ import build_parser
from harness.toxiproxy.client import ToxiproxyClient, ToxiproxyError
from harness.toxiproxy.server import EmbeddedToxiproxyThread, start_embedded_toxiproxy

ROOT = Path(__file__).resolve().parents[2]


def _recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_start_embedded_in_running_loop(echo_server: Any) -> None:
    async def scenario() -> tuple[int, bytes]:
        handle = await start_embedded_toxiproxy()
        try:
            assert handle.url == f"http://127.0.0.1:{handle.port}"
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(
                None,
                lambda: requests.post(
                    f"{handle.url}/proxies",
                    json={"name": "a", "listen": "127.0.0.1:0", "upstream": echo_server.address},
                    timeout=5,
                ),
            )
            port = int(response.json()["listen"].rpartition(":")[2])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"in-loop")
            data = await asyncio.wait_for(reader.readexactly(7), 5)
            writer.close()
            return response.status_code, data
        finally:
            await handle.stop()

    status, data = asyncio.run(scenario())
    assert (status, data) == (201, b"in-loop")


def test_stop_closes_api_and_proxies(echo_server: Any) -> None:
    server = EmbeddedToxiproxyThread().start()
    client = ToxiproxyClient(server.url, timeout=1.0)
    port = int(client.create_proxy("s", "127.0.0.1:0", echo_server.address).rpartition(":")[2])
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    server.stop()
    assert sock.recv(1) == b""
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises(ToxiproxyError):
        client.version()


def test_loopback_only_by_default(echo_server: Any) -> None:
    with EmbeddedToxiproxyThread() as server:
        response = requests.post(
            f"{server.url}/proxies",
            json={"name": "wide", "listen": "0.0.0.0:0", "upstream": echo_server.address},
            timeout=5,
        )
        assert response.status_code == 400
        assert "not loopback" in json.loads(response.text)["error"]
        default = requests.post(f"{server.url}/proxies", json={"name": "d", "upstream": echo_server.address}, timeout=5)
        assert default.json()["listen"].startswith("127.0.0.1:")


def test_bad_input_is_rejected_with_a_reason(echo_server: Any) -> None:
    with EmbeddedToxiproxyThread() as server:
        url = server.url

        def post(path: str, body: Any) -> dict[str, Any]:
            response = requests.post(f"{url}{path}", json=body, timeout=5)
            assert response.status_code == 400, response.text
            return dict(json.loads(response.text))

        assert "upstream" in post("/proxies", {"name": "p", "upstream": "no-port"})["error"]
        requests.post(f"{url}/proxies", json={"name": "p", "upstream": echo_server.address}, timeout=5)
        assert "toxicity" in post("/proxies/p/toxics", {"type": "latency", "toxicity": 3})["error"]
        assert ">= 0" in post("/proxies/p/toxics", {"type": "latency", "attributes": {"latency": -5}})["error"]
        assert "array" in post("/populate", {"proxies": []})["error"]
        wide_second = [
            {"name": "fine", "listen": "127.0.0.1:0", "upstream": echo_server.address},
            {"name": "wide", "listen": "0.0.0.0:0", "upstream": echo_server.address},
        ]
        assert "not loopback" in post("/populate", wide_second)["error"]
        assert set(requests.get(f"{url}/proxies", timeout=5).json()) == {"p"}  # validated before creating any


def test_populate_listen_conflict_reports_partial_result(echo_server: Any) -> None:
    with EmbeddedToxiproxyThread() as server:
        taken = requests.post(f"{server.url}/proxies", json={"name": "t", "upstream": echo_server.address}, timeout=5)
        body = [
            {"name": "first", "listen": "127.0.0.1:0", "upstream": echo_server.address},
            {"name": "clash", "listen": taken.json()["listen"], "upstream": echo_server.address},
        ]
        response = requests.post(f"{server.url}/populate", json=body, timeout=5)
        assert response.status_code == 500
        payload = response.json()
        assert "address already in use" in payload["error"]
        assert [p["name"] for p in payload["proxies"]] == ["first"]


def test_downstream_reset_peer_also_resets_the_client(echo_server: Any) -> None:
    with EmbeddedToxiproxyThread() as server:
        client = ToxiproxyClient(server.url)
        port = int(client.create_proxy("r", "127.0.0.1:0", echo_server.address).rpartition(":")[2])
        client.add_reset_peer("r", 0, stream="downstream")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"x")
            with pytest.raises(ConnectionResetError):
                _recv_all(sock)


def test_toxicity_is_rolled_per_connection(echo_server: Any) -> None:
    with EmbeddedToxiproxyThread(seed=1234) as server:
        client = ToxiproxyClient(server.url)
        port = int(client.create_proxy("half", "127.0.0.1:0", echo_server.address).rpartition(":")[2])
        client.add_limit_data("half", 0, stream="upstream", toxicity=0.5)
        outcomes = []
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"ping")
                try:
                    outcomes.append(_recv_all_until(sock, 4) == b"ping")
                except ConnectionResetError:
                    outcomes.append(False)
        assert any(outcomes) and not all(outcomes)


def _recv_all_until(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_updating_a_toxic_applies_to_open_connections(echo_server: Any) -> None:
    with EmbeddedToxiproxyThread() as server:
        client = ToxiproxyClient(server.url)
        port = int(client.create_proxy("u", "127.0.0.1:0", echo_server.address).rpartition(":")[2])
        client.add_bandwidth("u", 0)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"stalled")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(16)
            sock.settimeout(5)
            client.update_toxic("u", "bandwidth_downstream", attributes={"rate": 1000})
            assert _recv_all_until(sock, 7) == b"stalled"


def test_thread_server_serves_another_process(echo_server: Any) -> None:
    with EmbeddedToxiproxyThread() as server:
        code = textwrap.dedent(
            f"""
            import socket
            from toxiproxy import Toxiproxy
            from toxiproxy.api import APIConsumer
            APIConsumer.host, APIConsumer.port = "127.0.0.1", {server.port}
            proxy = Toxiproxy().create(upstream="{echo_server.address}", name="child", listen="127.0.0.1:0")
            sock = socket.create_connection(("127.0.0.1", int(proxy.listen.rpartition(":")[2])), timeout=5)
            sock.sendall(b"from child")
            print(sock.recv(64).decode())
            """
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "from child"
        assert "child" in ToxiproxyClient(server.url).proxies()


def test_cli_runs_prints_url_and_stops_on_sigterm(tmp_path: Path, echo_server: Any) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "cfg", "listen": "127.0.0.1:0", "upstream": echo_server.address}]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.toxiproxy",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(config),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert f"http://127.0.0.1:{port}" in line
            assert "cfg" in ToxiproxyClient(f"http://127.0.0.1:{port}").proxies()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the API port still accepts connections after SIGTERM")


def test_cli_parser_defaults_and_errors() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.config, args.seed) == ("127.0.0.1", 8474, None, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--port", "http"])
