"""Toxiproxy API + data-plane conformance, run against whatever ``gameday_toxiproxy`` provides.

With ``GAMEDAY_TOXIPROXY_URL`` pointing at a real Toxiproxy 2.12 the same module checks the real server, so
nothing here relies on behaviour specific to the embedded server. Data-plane checks use real TCP connections
through the proxy to small local upstream servers (see conftest.py).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
import requests
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from harness.toxiproxy.client import ToxiproxyClient

TIMEOUT = 5.0


# --------------------------------------------------------------------------------------------- helpers


def http(client: ToxiproxyClient, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    data = json.dumps(body) if body is not None and not isinstance(body, str | bytes) else body
    try:
        return session.request(method, f"{client.url}{path}", data=data, timeout=TIMEOUT, **kwargs)
    finally:
        session.close()


def assert_error(response: requests.Response, status: int, message: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text.endswith("\n")
    payload = json.loads(response.text)
    assert payload["status"] == status
    if message is not None:
        assert payload["error"] == message
    return payload


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def make_proxy(client: ToxiproxyClient, name: str, upstream: str) -> int:
    return port_of(client.create_proxy(name, "127.0.0.1:0", upstream))


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_all(sock: socket.socket) -> bytes:
    """Everything until EOF."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - started


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def client(toxiproxy_clean: ToxiproxyClient) -> ToxiproxyClient:
    return toxiproxy_clean


@pytest.fixture
def pyclient(client: ToxiproxyClient) -> Toxiproxy:
    """toxiproxy-python itself, pointed at the server under test (its host/port are class-level)."""
    APIConsumer.host = client.host
    APIConsumer.port = client.port
    return Toxiproxy()


# --------------------------------------------------------------------------------------------- server


def test_version_and_request_id_on_every_response(client: ToxiproxyClient) -> None:
    ok = http(client, "GET", "/version")
    assert ok.status_code == 200
    assert json.loads(ok.text)["version"]
    missing = http(client, "GET", "/proxies/no-such-proxy")
    assert ok.headers["X-Toxiproxy-Request-Id"]
    assert missing.headers["X-Toxiproxy-Request-Id"]
    assert ok.headers["X-Toxiproxy-Request-Id"] != missing.headers["X-Toxiproxy-Request-Id"]


def test_browser_user_agent_is_forbidden(client: ToxiproxyClient) -> None:
    response = http(client, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})
    assert response.status_code == 403
    assert "X-Toxiproxy-Request-Id" in response.headers
    assert http(client, "GET", "/proxies", headers={"User-Agent": "curl/8"}).status_code == 200


# --------------------------------------------------------------------------------------------- proxies


def test_create_proxy_resolves_ephemeral_port(client: ToxiproxyClient, echo_server: Any) -> None:
    response = http(
        client, "POST", "/proxies", {"name": "c1", "listen": "127.0.0.1:0", "upstream": echo_server.address}
    )
    assert response.status_code == 201
    proxy = response.json()
    assert proxy["name"] == "c1"
    assert proxy["upstream"] == echo_server.address
    assert proxy["enabled"] is True
    assert proxy["toxics"] == []
    port = port_of(proxy["listen"])
    assert port != 0
    listed = http(client, "GET", "/proxies").json()
    assert listed["c1"]["listen"] == proxy["listen"]
    assert http(client, "GET", "/proxies/c1").json() == proxy
    with connect(port) as sock:
        assert round_trip(sock, b"through the proxy") >= 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}, "missing required field: name"),
        ({"name": "x", "listen": "127.0.0.1:0"}, "missing required field: upstream"),
    ],
)
def test_create_proxy_missing_fields(client: ToxiproxyClient, body: dict[str, str], message: str) -> None:
    assert_error(http(client, "POST", "/proxies", body), 400, message)
    assert "x" not in client.proxies()


def test_create_proxy_bad_json(client: ToxiproxyClient) -> None:
    payload = assert_error(http(client, "POST", "/proxies", "{not json"), 400)
    assert payload["error"].startswith("bad request body")


def test_create_proxy_conflicts(client: ToxiproxyClient, echo_server: Any) -> None:
    body = {"name": "dup", "listen": "127.0.0.1:0", "upstream": echo_server.address}
    first = http(client, "POST", "/proxies", body)
    assert first.status_code == 201
    assert_error(http(client, "POST", "/proxies", body), 409, "proxy already exists")
    taken = {"name": "dup2", "listen": first.json()["listen"], "upstream": echo_server.address}
    assert_error(http(client, "POST", "/proxies", taken), 500)


def test_unknown_proxy_is_404_everywhere(client: ToxiproxyClient) -> None:
    for method, path, body in [
        ("GET", "/proxies/ghost", None),
        ("PATCH", "/proxies/ghost", {"enabled": False}),
        ("POST", "/proxies/ghost", {"enabled": False}),
        ("DELETE", "/proxies/ghost", None),
        ("GET", "/proxies/ghost/toxics", None),
        ("POST", "/proxies/ghost/toxics", {"type": "latency"}),
    ]:
        assert_error(http(client, method, path, body), 404, "proxy not found")


def test_disable_refuses_new_and_closes_open_connections(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "dis", echo_server.address)
    with connect(port) as sock:
        round_trip(sock)
        response = http(client, "PATCH", "/proxies/dis", {"enabled": False})
        assert response.status_code == 200
        assert response.json()["enabled"] is False
        assert closed_by_peer(sock)
    assert refused(port)
    assert http(client, "PATCH", "/proxies/dis", {"enabled": True}).json()["enabled"] is True
    with connect(port) as sock:
        round_trip(sock)


def test_update_keeps_omitted_fields_and_deprecated_post_works(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "upd", echo_server.address)
    before = client.get_proxy("upd")
    response = http(client, "POST", "/proxies/upd", {"enabled": False})
    assert response.status_code == 200
    after = response.json()
    assert (after["listen"], after["upstream"], after["enabled"]) == (before.listen, before.upstream, False)
    assert refused(port)
    assert_error(http(client, "PATCH", "/proxies/upd", "{oops"), 400)


def test_changing_upstream_restarts_proxy(client: ToxiproxyClient, echo_server: Any, greeter_server: Any) -> None:
    port = make_proxy(client, "move", echo_server.address)
    with connect(port) as sock:
        round_trip(sock)
        response = http(client, "PATCH", "/proxies/move", {"upstream": greeter_server.address})
        assert response.status_code == 200
        assert response.json()["upstream"] == greeter_server.address
        assert closed_by_peer(sock)
    with connect(port) as sock:
        assert recv_all(sock) == b"hello"


def test_delete_proxy(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "gone", echo_server.address)
    with connect(port) as sock:
        round_trip(sock)
        response = http(client, "DELETE", "/proxies/gone")
        assert response.status_code == 204
        assert closed_by_peer(sock)
    assert refused(port)
    assert_error(http(client, "DELETE", "/proxies/gone"), 404, "proxy not found")


def test_unreachable_upstream_closes_client(client: ToxiproxyClient, tcp_server_factory: Any) -> None:
    dead = tcp_server_factory(lambda conn: None)
    address = dead.address
    dead.close()
    port = make_proxy(client, "deadup", address)
    with connect(port) as sock:
        assert closed_by_peer(sock)


# --------------------------------------------------------------------------------------------- toxics API


def test_toxic_crud(client: ToxiproxyClient, echo_server: Any) -> None:
    make_proxy(client, "tx", echo_server.address)
    created = http(client, "POST", "/proxies/tx/toxics", {"type": "latency", "attributes": {"latency": 10}})
    assert created.status_code == 200
    toxic = created.json()
    assert toxic["name"] == "latency_downstream"
    assert toxic["stream"] == "downstream"
    assert toxic["type"] == "latency"
    assert float(toxic["toxicity"]) == 1.0
    assert toxic["attributes"]["latency"] == 10
    up = http(client, "POST", "/proxies/tx/toxics", {"type": "noop", "stream": "upstream", "name": "n1"})
    assert up.status_code == 200
    listed = http(client, "GET", "/proxies/tx/toxics").json()
    assert {(t["name"], t["stream"]) for t in listed} == {("latency_downstream", "downstream"), ("n1", "upstream")}
    in_proxy = http(client, "GET", "/proxies/tx").json()["toxics"]
    assert sorted(t["name"] for t in in_proxy) == ["latency_downstream", "n1"]
    got = http(client, "GET", "/proxies/tx/toxics/latency_downstream")
    assert got.status_code == 200
    assert got.json()["attributes"]["latency"] == 10

    patched = http(
        client,
        "PATCH",
        "/proxies/tx/toxics/latency_downstream",
        {"attributes": {"latency": 25, "unknown_key": 3}, "toxicity": 0.5, "stream": "upstream"},
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["attributes"]["latency"] == 25
    assert "unknown_key" not in body["attributes"]
    assert float(body["toxicity"]) == 0.5
    assert body["stream"] == "downstream"
    deprecated = http(client, "POST", "/proxies/tx/toxics/latency_downstream", {"attributes": {"jitter": 2}})
    assert deprecated.status_code == 200
    assert deprecated.json()["attributes"]["jitter"] == 2
    assert deprecated.json()["attributes"]["latency"] == 25
    assert_error(
        http(client, "PATCH", "/proxies/tx/toxics/latency_downstream", {"attributes": {"latency": "slow"}}), 400
    )

    assert http(client, "DELETE", "/proxies/tx/toxics/latency_downstream").status_code == 204
    assert_error(http(client, "GET", "/proxies/tx/toxics/latency_downstream"), 404, "toxic not found")
    assert_error(http(client, "DELETE", "/proxies/tx/toxics/latency_downstream"), 404, "toxic not found")
    assert_error(
        http(client, "PATCH", "/proxies/tx/toxics/latency_downstream", {"toxicity": 1}), 404, "toxic not found"
    )


def test_toxic_errors(client: ToxiproxyClient, echo_server: Any) -> None:
    make_proxy(client, "txe", echo_server.address)
    assert_error(http(client, "POST", "/proxies/txe/toxics", {"type": "teleport"}), 400, "invalid toxic type")
    assert_error(
        http(client, "POST", "/proxies/txe/toxics", {"type": "latency", "stream": "sideways"}),
        400,
        "stream was invalid, can be either upstream or downstream",
    )
    assert_error(http(client, "POST", "/proxies/txe/toxics", {"type": "latency", "attributes": {"latency": "1s"}}), 400)
    assert_error(http(client, "POST", "/proxies/txe/toxics", "{bad"), 400)
    first = {"name": "same", "type": "latency", "stream": "upstream"}
    assert http(client, "POST", "/proxies/txe/toxics", first).status_code == 200
    other_stream = {"name": "same", "type": "noop", "stream": "downstream"}
    assert_error(http(client, "POST", "/proxies/txe/toxics", other_stream), 409, "toxic already exists")


def test_reset_reenables_and_clears_toxics(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "rs", echo_server.address)
    client.add_latency("rs", 50)
    client.disable("rs")
    assert refused(port)
    response = http(client, "POST", "/reset")
    assert response.status_code == 204
    proxy = client.get_proxy("rs")
    assert proxy.enabled is True
    assert proxy.toxics == ()
    assert client.toxics("rs") == []
    with connect(port) as sock:
        round_trip(sock)


def test_populate(client: ToxiproxyClient, echo_server: Any, greeter_server: Any) -> None:
    body = [
        {"name": "pop1", "listen": "127.0.0.1:0", "upstream": echo_server.address},
        {"name": "pop2", "listen": "127.0.0.1:0", "upstream": greeter_server.address, "enabled": False},
    ]
    response = http(client, "POST", "/populate", body)
    assert response.status_code == 201
    proxies = {p["name"]: p for p in response.json()["proxies"]}
    assert set(proxies) == {"pop1", "pop2"}
    assert proxies["pop2"]["enabled"] is False
    with connect(port_of(proxies["pop1"]["listen"])) as sock:
        round_trip(sock)

    # Same name, listen and upstream: kept untouched (its toxics survive).
    client.add_latency("pop1", 5)
    again = [{"name": "pop1", "listen": proxies["pop1"]["listen"], "upstream": echo_server.address}]
    assert http(client, "POST", "/populate", again).status_code == 201
    assert [t["name"] for t in client.toxics("pop1")] == ["latency_downstream"]
    # A different upstream replaces it.
    moved = [{"name": "pop1", "listen": "127.0.0.1:0", "upstream": greeter_server.address}]
    assert http(client, "POST", "/populate", moved).status_code == 201
    assert client.get_proxy("pop1").upstream == greeter_server.address
    assert client.toxics("pop1") == []


def test_populate_validates_everything_first(client: ToxiproxyClient, echo_server: Any) -> None:
    body = [
        {"name": "ok1", "listen": "127.0.0.1:0", "upstream": echo_server.address},
        {"listen": "127.0.0.1:0", "upstream": echo_server.address},
    ]
    response = http(client, "POST", "/populate", body)
    assert response.status_code == 400
    assert json.loads(response.text)["error"] == "missing required field: name at proxy 2"
    assert "ok1" not in client.proxies()


# --------------------------------------------------------------------------------------------- data plane


def test_latency_downstream_and_upstream(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "lat", echo_server.address)
    client.add_latency("lat", 200, stream="downstream")
    with connect(port) as sock:
        assert round_trip(sock) >= 0.2
    client.remove_toxic("lat", "latency_downstream")
    client.add_latency("lat", 150, stream="upstream")
    client.add_latency("lat", 150, stream="downstream")
    with connect(port) as sock:
        assert round_trip(sock) >= 0.3


def test_toxic_applies_to_open_connection(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "live", echo_server.address)
    with connect(port) as sock:
        round_trip(sock)
        client.add_latency("live", 250)
        assert round_trip(sock) >= 0.25


def test_toxicity_zero_does_nothing(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "tox0", echo_server.address)
    client.add_latency("tox0", 5000, toxicity=0.0)
    client.add_timeout("tox0", 0, stream="upstream", toxicity=0.0)
    with connect(port) as sock:
        assert round_trip(sock, b"untouched") < 2.5  # a 5 s latency toxic was not applied


def test_bandwidth_throttles(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "bw", echo_server.address)
    client.add_bandwidth("bw", 100)  # 100 KB/s downstream
    payload = b"x" * 50_000
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        assert time.monotonic() - started >= 0.35  # 50 KB at 100 KB/s is 0.5 s


def test_bandwidth_zero_stalls_without_closing(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "bw0", echo_server.address)
    client.add_bandwidth("bw0", 0)
    with connect(port) as sock:
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(16)
        sock.settimeout(TIMEOUT)
        client.remove_toxic("bw0", "bandwidth_downstream")
        assert recv_exactly(sock, 4) == b"held"


def test_timeout_drops_data_and_closes(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "to", echo_server.address)
    client.add_timeout("to", 300)
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"lost")
        assert recv_all(sock) == b""
        assert time.monotonic() - started >= 0.25


def test_timeout_zero_holds_until_removed(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "to0", echo_server.address)
    client.add_timeout("to0", 0)
    with connect(port) as sock:
        sock.sendall(b"lost")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(16)
        sock.settimeout(TIMEOUT)
        client.remove_toxic("to0", "timeout_downstream")
        assert closed_by_peer(sock)


def test_reset_peer_gives_connection_reset(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "rst", echo_server.address)
    client.add_reset_peer("rst", 0, stream="upstream")
    with connect(port) as sock:
        sock.sendall(b"boom")
        with pytest.raises(ConnectionResetError):
            recv_all(sock)  # a FIN (b"") instead of a RST would end this without raising


def test_slicer_delivers_everything_in_pieces(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "sl", echo_server.address)
    client.add_slicer("sl", average_size=10, size_variation=5, delay_us=2000)
    payload = bytes(range(256)) * 4
    with connect(port) as sock:
        sock.sendall(payload)
        pieces = []
        received = b""
        while len(received) < len(payload):
            piece = sock.recv(65536)
            assert piece
            pieces.append(piece)
            received += piece
    assert received == payload
    assert len(pieces) > 1


def test_limit_data_closes_after_n_bytes(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "lim", echo_server.address)
    client.add_limit_data("lim", 100)
    with connect(port) as sock:
        sock.sendall(b"a" * 1000)
        assert recv_all(sock) == b"a" * 100


def test_slow_close_delays_close(client: ToxiproxyClient, greeter_server: Any) -> None:
    port = make_proxy(client, "sc", greeter_server.address)
    client.add_slow_close("sc", 400)
    with connect(port) as sock:
        started = time.monotonic()
        assert recv_all(sock) == b"hello"
        assert time.monotonic() - started >= 0.35


def test_noop_passes_through(client: ToxiproxyClient, echo_server: Any) -> None:
    port = make_proxy(client, "nop", echo_server.address)
    client.add_toxic("nop", "noop")
    with connect(port) as sock:
        round_trip(sock, b"unchanged" * 100)


# --------------------------------------------------------------------------------------------- toxiproxy-python


def test_toxiproxy_python_flow(pyclient: Toxiproxy, echo_server: Any) -> None:
    assert pyclient.version()
    proxy = pyclient.create(upstream=echo_server.address, name="py1", listen="127.0.0.1:0")
    assert port_of(proxy.listen) != 0
    assert "py1" in pyclient.proxies()
    with pytest.raises(ProxyExists):
        pyclient.create(upstream=echo_server.address, name="py1")
    proxy.add_toxic(type="latency", attributes={"latency": 200, "jitter": 0})
    assert set(proxy.toxics()) == {"latency_downstream"}
    with connect(port_of(proxy.listen)) as sock:
        assert round_trip(sock) >= 0.2
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="nonsense")
    assert proxy.destroy_toxic("latency_downstream")
    with pytest.raises(NotFound):
        proxy.destroy_toxic("latency_downstream")
    with proxy.down():
        assert refused(port_of(proxy.listen))
    with connect(port_of(proxy.listen)) as sock:
        round_trip(sock)
    assert pyclient.reset()
    assert pyclient.destroy(proxy)
    assert pyclient.get_proxy("py1") is None


def test_toxiproxy_python_populate(pyclient: Toxiproxy, echo_server: Any) -> None:
    created = pyclient.populate([{"name": "pp1", "upstream": echo_server.address, "listen": "127.0.0.1:0"}])
    assert [p.name for p in created] == ["pp1"]
    assert pyclient.get_proxy("pp1") is not None
