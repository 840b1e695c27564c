"""The harness's bounded Toxiproxy client (toxiproxy-python underneath)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.toxiproxy.client import ToxiproxyClient, ToxiproxyError
from harness.toxiproxy.server import EmbeddedToxiproxyThread


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and reads requests but never answers (a wedged API)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    sock.close()
    for conn in held:
        conn.close()


def test_hung_server_cannot_hang_a_call(silent_server: str) -> None:
    client = ToxiproxyClient(silent_server, timeout=0.3)
    for call in (client.version, client.reset, lambda: client.add_latency("p", 100), lambda: client.disable("p")):
        with pytest.raises(ToxiproxyError) as info:
            call()
        assert "within 0.3 s" in info.value.message


def test_unreachable_server_is_one_error_type() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ToxiproxyClient(f"127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(ToxiproxyError) as info:
        client.create_proxy("x", "127.0.0.1:0", "127.0.0.1:1")
    assert info.value.call == "create proxy 'x' (127.0.0.1:0 -> 127.0.0.1:1)"
    assert "cannot reach" in info.value.message
    assert client.ping() is False


def test_errors_name_the_call_and_carry_the_server_message(toxiproxy_clean: ToxiproxyClient, echo_server: Any) -> None:
    client = toxiproxy_clean
    listen = client.create_proxy("cl1", "127.0.0.1:0", echo_server.address)
    assert int(listen.rpartition(":")[2]) > 0

    with pytest.raises(ToxiproxyError) as info:
        client.remove_toxic("cl1", "nope")
    assert (info.value.status, info.value.message) == (404, "toxic not found")
    assert "remove toxic 'nope' from proxy 'cl1'" in str(info.value)

    with pytest.raises(ToxiproxyError) as info:
        client.add_toxic("cl1", "teleport")
    assert (info.value.status, info.value.message) == (400, "invalid toxic type")

    client.add_latency("cl1", 10)
    with pytest.raises(ToxiproxyError) as info:
        client.add_latency("cl1", 20)
    assert (info.value.status, info.value.message) == (409, "toxic already exists")

    with pytest.raises(ToxiproxyError) as info:
        client.create_proxy("cl2", listen, echo_server.address)  # port already taken
    assert info.value.status == 500

    with pytest.raises(ToxiproxyError) as info:
        client.get_proxy("ghost")
    assert (info.value.status, info.value.message) == (404, "proxy not found")


def test_typed_helpers_send_the_right_toxics(toxiproxy_clean: ToxiproxyClient, echo_server: Any) -> None:
    client = toxiproxy_clean
    client.create_proxy("cl3", "127.0.0.1:0", echo_server.address)
    assert client.add_latency("cl3", 100, 10, "upstream") == "latency_upstream"
    assert client.add_timeout("cl3", 500, name="t") == "t"
    assert client.add_reset_peer("cl3", 20, toxicity=0.0) == "reset_peer_upstream"
    assert client.add_bandwidth("cl3", 64) == "bandwidth_downstream"
    assert client.add_slicer("cl3", 8, 2, 100, name="s") == "s"
    assert client.add_limit_data("cl3", 1000, name="lim") == "lim"
    assert client.add_slow_close("cl3", 50, name="sc") == "sc"
    toxics = {t["name"]: t for t in client.toxics("cl3")}
    assert toxics["latency_upstream"]["attributes"] == {"latency": 100, "jitter": 10}
    assert toxics["latency_upstream"]["stream"] == "upstream"
    assert toxics["t"]["attributes"] == {"timeout": 500}
    assert toxics["reset_peer_upstream"]["attributes"] == {"timeout": 20}
    assert float(toxics["reset_peer_upstream"]["toxicity"]) == 0.0
    assert toxics["bandwidth_downstream"]["attributes"] == {"rate": 64}
    assert toxics["s"]["attributes"] == {"average_size": 8, "size_variation": 2, "delay": 100}
    assert toxics["lim"]["attributes"] == {"bytes": 1000}
    assert toxics["sc"]["attributes"] == {"delay": 50}

    updated = client.update_toxic("cl3", "latency_upstream", attributes={"latency": 7}, toxicity=0.5)
    assert updated["attributes"]["latency"] == 7
    assert float(updated["toxicity"]) == 0.5

    with client.down("cl3"):
        assert client.get_proxy("cl3").enabled is False
    assert client.get_proxy("cl3").enabled is True
    client.reset()
    assert client.toxics("cl3") == []
    client.delete_proxy("cl3")
    assert "cl3" not in client.proxies()


def test_argument_errors_are_raised_before_any_call() -> None:
    client = ToxiproxyClient("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(ValueError, match="stream"):
        client.add_latency("p", 10, stream="sideways")
    with pytest.raises(ValueError, match="toxicity"):
        client.add_latency("p", 10, toxicity=2)
    with pytest.raises(ValueError, match="host:port"):
        ToxiproxyClient("http://nohost")


def test_two_clients_for_two_servers_from_threads(echo_server: Any) -> None:
    """toxiproxy-python's host/port are class-level; the wrapper must still keep servers apart."""
    with EmbeddedToxiproxyThread() as first, EmbeddedToxiproxyThread() as second:
        clients = [ToxiproxyClient(first.url), ToxiproxyClient(second.url)]
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                for i in range(15):
                    clients[index].create_proxy(f"s{index}-{i}", "127.0.0.1:0", echo_server.address)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert set(clients[0].proxies()) == {f"s0-{i}" for i in range(15)}
        assert set(clients[1].proxies()) == {f"s1-{i}" for i in range(15)}


def test_timeout_is_per_call_not_cumulative(silent_server: str, toxiproxy_clean: ToxiproxyClient) -> None:
    slow = ToxiproxyClient(silent_server, timeout=0.2)
    with pytest.raises(ToxiproxyError):
        slow.version()
    started = time.monotonic()
    assert toxiproxy_clean.version()  # the other client's longer timeout is unaffected
    assert time.monotonic() - started < 5.0
