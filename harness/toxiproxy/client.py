"""The harness's Toxiproxy client: toxiproxy-python 0.1.1 with bounded calls and one error type.

toxiproxy-python keeps the server address in class attributes (``APIConsumer.host/port``) and calls the
module-level ``requests.get/post/delete`` with no timeout, so a wedged server hangs the caller forever.

How calls are bounded, and why this way: we replace the ``requests`` name inside ``toxiproxy.api`` with a
small shim whose get/post/delete go through a ``requests.Session`` that always passes
``timeout=(connect, read)`` and ignores proxy environment variables (``trust_env=False``: an
``HTTP_PROXY`` must never reroute loopback API calls). A timeout then surfaces as an exception inside the
calling thread, the socket is closed, and nothing is left behind. The alternative - running each call in a
worker thread and abandoning it at a deadline - leaks a thread and an open socket per hung call, and the
abandoned thread may still mutate the server afterwards (a late "add toxic" landing after the scenario
moved on). The Toxiproxy API's bodies are tiny, so connect + per-read timeouts bound the whole call.

Because host/port are class-level, every call takes a process-wide lock, points ``APIConsumer`` at this
client's server and runs; two clients for two servers can therefore be used from several threads.

Errors (HTTP 4xx/5xx, connection failures, timeouts, malformed answers) all become :class:`ToxiproxyError`
naming the call and carrying the server's message and status.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import toxiproxy.api as _toxiproxy_api
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.proxy import Proxy

DEFAULT_URL = "http://127.0.0.1:8474"
DEFAULT_TIMEOUT_S = 5.0
STREAMS = ("upstream", "downstream")

T = TypeVar("T")

__all__ = ["DEFAULT_URL", "ProxyInfo", "ToxiproxyClient", "ToxiproxyError"]


class ToxiproxyError(Exception):
    """A Toxiproxy API call failed: ``call`` names it, ``message`` is the server's (or transport's) reason."""

    def __init__(self, call: str, message: str, status: int | None = None) -> None:
        self.call = call
        self.message = message
        self.status = status
        where = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"toxiproxy {call} failed: {where}{message}")


class _HttpError(Exception):
    """Raised by the shim for statuses toxiproxy-python does not turn into exceptions (403, 5xx, ...)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _TimeoutRequests:
    """Stands in for the ``requests`` module inside ``toxiproxy.api``: same call shape, bounded."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.default_timeout = DEFAULT_TIMEOUT_S

    @property
    def timeout(self) -> float:
        return float(getattr(self._local, "timeout", self.default_timeout))

    @contextmanager
    def bounded(self, timeout: float) -> Iterator[None]:
        previous = getattr(self._local, "timeout", None)
        self._local.timeout = timeout
        try:
            yield
        finally:
            if previous is None:
                del self._local.timeout
            else:
                self._local.timeout = previous

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.session = session
        return session

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (min(self.timeout, 3.0), self.timeout))
        response = self._session().request(method, url, **kwargs)
        if response.status_code >= 400 and response.status_code not in (400, 404, 409):
            raise _HttpError(response)
        return response

    def get(self, url: str, params: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, params=params, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, data=data, json=json, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", url, **kwargs)


_SHIM = _TimeoutRequests()
_toxiproxy_api.requests = _SHIM  # type: ignore[attr-defined]
_API_LOCK = threading.RLock()


def _server_message(content: bytes | str | None) -> str:
    if content is None:
        return ""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
    text = text.strip()
    try:
        import json

        payload = json.loads(text)
        if isinstance(payload, dict) and "error" in payload:
            return str(payload["error"])
    except ValueError:
        pass
    return text


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[dict[str, Any], ...] = ()

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ToxiproxyClient:
    """Bounded, typed access to one Toxiproxy server (real or embedded)."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname or parts.port is None:
            raise ValueError(f"Toxiproxy URL {url!r} must look like http://host:port")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.host: str = parts.hostname
        self.port: int = parts.port
        self.url = f"http://{self.host}:{self.port}" if ":" not in self.host else f"http://[{self.host}]:{self.port}"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ToxiproxyClient({self.url!r})"

    # -- plumbing
    def _call(self, call: str, fn: Callable[[], T]) -> T:
        with _API_LOCK, _SHIM.bounded(self.timeout):
            _toxiproxy_api.APIConsumer.host = self.host
            _toxiproxy_api.APIConsumer.port = self.port
            try:
                return fn()
            except ToxiproxyError:
                raise
            except _HttpError as exc:
                raise ToxiproxyError(call, _server_message(exc.response.content), exc.response.status_code) from None
            except ProxyExists as exc:
                raise ToxiproxyError(call, _server_message(exc.args[0] if exc.args else ""), 409) from None
            except NotFound as exc:
                raise ToxiproxyError(call, _server_message(exc.args[0] if exc.args else ""), 404) from None
            except InvalidToxic as exc:
                raise ToxiproxyError(call, _server_message(exc.args[0] if exc.args else ""), 400) from None
            except requests.Timeout:
                raise ToxiproxyError(call, f"no answer from {self.url} within {self.timeout} s") from None
            except requests.RequestException as exc:
                raise ToxiproxyError(call, f"cannot reach {self.url}: {exc}") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise ToxiproxyError(call, f"unexpected answer from {self.url}: {exc!r}") from None

    def _raw(self, method: str, path: str, json_body: Any = None) -> requests.Response:
        """A direct API call (for endpoints toxiproxy-python does not cover), bounded like the rest."""
        url = f"{self.url}{path}"
        response = _SHIM.request(method, url, json=json_body)
        if response.status_code in (400, 404, 409):
            raise _HttpError(response)
        return response

    @staticmethod
    def _proxy_obj(info: ProxyInfo) -> Proxy:
        return Proxy(name=info.name, upstream=info.upstream, enabled=info.enabled, listen=info.listen)

    @staticmethod
    def _info(payload: dict[str, Any]) -> ProxyInfo:
        return ProxyInfo(
            name=str(payload["name"]),
            listen=str(payload["listen"]),
            upstream=str(payload["upstream"]),
            enabled=bool(payload["enabled"]),
            toxics=tuple(payload.get("toxics") or ()),
        )

    # -- server
    def version(self) -> str:
        def run() -> str:
            response = _toxiproxy_api.APIConsumer.get("/version")
            try:
                return str(response.json()["version"])
            except (ValueError, KeyError, TypeError):
                return response.text.strip()

        return self._call("version", run)

    def ping(self) -> bool:
        try:
            self.version()
        except ToxiproxyError:
            return False
        return True

    def reset(self) -> None:
        """Re-enable every proxy and remove every toxic (proxies are kept)."""
        self._call("reset", lambda: Toxiproxy().reset())

    def populate(self, proxies: list[dict[str, Any]]) -> list[ProxyInfo]:
        """POST /populate: create or replace all of ``proxies`` (validated all first by the server)."""

        def run() -> list[ProxyInfo]:
            payload = self._raw("POST", "/populate", proxies).json()
            return [self._info(p) for p in payload["proxies"]]

        return self._call("populate", run)

    # -- proxies
    def proxies(self) -> dict[str, ProxyInfo]:
        def run() -> dict[str, ProxyInfo]:
            payload = _toxiproxy_api.APIConsumer.get("/proxies").json()
            return {name: self._info(p) for name, p in payload.items()}

        return self._call("list proxies", run)

    def get_proxy(self, name: str) -> ProxyInfo:
        return self._call(f"get proxy {name!r}", lambda: self._info(self._raw("GET", f"/proxies/{name}").json()))

    def create_proxy(self, name: str, listen: str, upstream: str, *, enabled: bool = True) -> str:
        """Create a proxy and return the address it really listens on (``host:port``; port 0 resolved)."""

        def run() -> str:
            proxy = Toxiproxy().create(upstream=upstream, name=name, listen=listen, enabled=enabled)
            return str(proxy.listen)

        return self._call(f"create proxy {name!r} ({listen} -> {upstream})", run)

    def delete_proxy(self, name: str) -> None:
        self._call(f"delete proxy {name!r}", lambda: self._raw("DELETE", f"/proxies/{name}"))

    def update_proxy(self, name: str, **fields: Any) -> ProxyInfo:
        """PATCH-style update (listen, upstream, enabled); a changed listen/upstream restarts the proxy."""
        return self._call(
            f"update proxy {name!r}", lambda: self._info(self._raw("POST", f"/proxies/{name}", fields).json())
        )

    def disable(self, proxy: str) -> None:
        """Take the proxy down: new connections are refused and open ones are closed."""
        self._call(f"disable proxy {proxy!r}", lambda: self._proxy_by_name(proxy).disable())

    def enable(self, proxy: str) -> None:
        self._call(f"enable proxy {proxy!r}", lambda: self._proxy_by_name(proxy).enable())

    @contextmanager
    def down(self, proxy: str) -> Iterator[None]:
        """The proxy is disabled inside the block and re-enabled after, whatever happens."""
        self.disable(proxy)
        try:
            yield
        finally:
            self.enable(proxy)

    def _proxy_by_name(self, name: str) -> Proxy:
        # toxiproxy-python's Proxy only needs the name for these calls; no extra round trip.
        return Proxy(name=name, upstream="", enabled=True, listen="")

    # -- toxics
    def add_toxic(
        self,
        proxy: str,
        type: str,
        *,
        stream: str = "downstream",
        attributes: dict[str, int] | None = None,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        """Add a toxic and return its name (default ``<type>_<stream>``)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        if not 0.0 <= toxicity <= 1.0:
            raise ValueError(f"toxicity must be between 0 and 1, got {toxicity}")
        toxic_name = name or f"{type}_{stream}"

        def run() -> str:
            self._proxy_by_name(proxy).add_toxic(
                type=type, stream=stream, name=toxic_name, toxicity=toxicity, attributes=dict(attributes or {})
            )
            return toxic_name

        return self._call(f"add {type} toxic {toxic_name!r} to proxy {proxy!r}", run)

    def add_latency(
        self,
        proxy: str,
        ms: int,
        jitter: int = 0,
        stream: str = "downstream",
        *,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        return self.add_toxic(
            proxy,
            "latency",
            stream=stream,
            attributes={"latency": int(ms), "jitter": int(jitter)},
            toxicity=toxicity,
            name=name,
        )

    def add_timeout(
        self, proxy: str, ms: int, stream: str = "downstream", *, toxicity: float = 1.0, name: str | None = None
    ) -> str:
        """Drop all data; close after ``ms`` (0 = never close; removing the toxic closes the connections)."""
        return self.add_toxic(
            proxy, "timeout", stream=stream, attributes={"timeout": int(ms)}, toxicity=toxicity, name=name
        )

    def add_reset_peer(
        self,
        proxy: str,
        timeout_ms: int = 0,
        stream: str = "upstream",
        *,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        """TCP RST after the first chunk (+ ``timeout_ms``).

        Defaults to the upstream stream: real Toxiproxy sets SO_LINGER 0 on the link's *source*, so only an
        upstream (client -> server) reset_peer makes the client see ``ConnectionResetError``.
        """
        return self.add_toxic(
            proxy, "reset_peer", stream=stream, attributes={"timeout": int(timeout_ms)}, toxicity=toxicity, name=name
        )

    def add_bandwidth(
        self,
        proxy: str,
        rate_kbps: int,
        stream: str = "downstream",
        *,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        """Throttle to ``rate_kbps`` KB/s (1 KB = 1000 B); 0 stalls the stream without closing it."""
        return self.add_toxic(
            proxy, "bandwidth", stream=stream, attributes={"rate": int(rate_kbps)}, toxicity=toxicity, name=name
        )

    def add_slow_close(
        self,
        proxy: str,
        delay_ms: int,
        stream: str = "downstream",
        *,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        return self.add_toxic(
            proxy, "slow_close", stream=stream, attributes={"delay": int(delay_ms)}, toxicity=toxicity, name=name
        )

    def add_limit_data(
        self,
        proxy: str,
        nbytes: int,
        stream: str = "downstream",
        *,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        return self.add_toxic(
            proxy, "limit_data", stream=stream, attributes={"bytes": int(nbytes)}, toxicity=toxicity, name=name
        )

    def add_slicer(
        self,
        proxy: str,
        average_size: int,
        size_variation: int = 0,
        delay_us: int = 0,
        stream: str = "downstream",
        *,
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        attributes = {"average_size": int(average_size), "size_variation": int(size_variation), "delay": int(delay_us)}
        return self.add_toxic(proxy, "slicer", stream=stream, attributes=attributes, toxicity=toxicity, name=name)

    def update_toxic(
        self, proxy: str, name: str, *, attributes: dict[str, int] | None = None, toxicity: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = attributes
        if toxicity is not None:
            body["toxicity"] = toxicity

        def run() -> dict[str, Any]:
            payload = self._raw("POST", f"/proxies/{proxy}/toxics/{name}", body).json()
            return dict(payload)

        return self._call(f"update toxic {name!r} of proxy {proxy!r}", run)

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            return [dict(t) for t in _toxiproxy_api.APIConsumer.get(f"/proxies/{proxy}/toxics").json()]

        return self._call(f"list toxics of proxy {proxy!r}", run)

    def remove_toxic(self, proxy: str, name: str) -> None:
        call = f"remove toxic {name!r} from proxy {proxy!r}"
        self._call(call, lambda: self._proxy_by_name(proxy).destroy_toxic(name))
