"""The services one net-mode run needs, started together and stopped together.

- the testnet server (HTTP + WebSocket + admin API) in a thread with its own event loop;
- Redis (`harness.services.provide_redis`: env, local redis-server, Docker);
- Toxiproxy (`harness.services.provide_toxiproxy`: env, binary, Docker, embedded) with three
  proxies on loopback: `rest` and `ws` (both to the testnet port, so the WebSocket can fail while
  REST works) and `redis`;
- the alert receivers (`harness.net.receivers`: HTTP for Slack / webhook / SMS, aiosmtpd for
  email), each channel behind its own proxy (`slack`, `webhook`, `email`, `sms`), so a slow or
  dead receiver is a Toxiproxy fault.

The bot is pointed at the proxies only; the harness talks to the testnet admin API and to Redis
directly. Everything listens on 127.0.0.1. `NetStack.stop()` undoes whatever `start()` managed to
do, in reverse order, and is safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from harness.net.receivers import AlertReceivers
from harness.services import ServiceHandle, provide_redis, provide_toxiproxy
from harness.toxiproxy.client import ToxiproxyClient

LOOPBACK = "127.0.0.1"
PROXIES = ("rest", "ws", "redis")
ALERT_PROXIES = ("slack", "webhook", "email", "sms")  # one per alert channel, each to its receiver
ADMIN_TIMEOUT_S = 5.0


class StackError(Exception):
    """A service of the net-mode stack could not be provided (the run is an ERROR, not a pass)."""

    def __init__(self, message: str, *, missing_service: bool = False) -> None:
        super().__init__(message)
        self.missing_service = missing_service


class TestnetThread:
    """`harness.testnet.server.start_testnet` in a background thread with its own loop."""

    __test__ = False  # not a pytest test class

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gameday-testnet", daemon=True)
        self.handle: Any = None

    def start(self, timeout: float = 10.0) -> Any:
        from harness.testnet.server import start_testnet

        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(start_testnet(host=LOOPBACK, port=0, **self.kwargs), self.loop)
        self.handle = future.result(timeout)
        return self.handle

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run `fn()` inside the testnet's loop (the engine is not thread-safe) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self.handle is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.handle.stop(), self.loop).result(timeout)
            self.handle = None
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


@dataclass
class NetStack:
    """Testnet + Redis + Toxiproxy (+ proxies). Use as a context manager or start()/stop()."""

    seed: int = 0
    keys: tuple[tuple[str, str], ...] = ()
    bar_ms: int = 300_000
    bar_real_ms: int | None = None
    tick_ms: int = 250
    testnet_kwargs: dict[str, Any] = field(default_factory=dict)
    testnet: TestnetThread | None = None
    redis: ServiceHandle | None = None
    toxiproxy: ServiceHandle | None = None
    toxi: ToxiproxyClient | None = None
    alerts: AlertReceivers | None = None  # the alert channels' receivers, behind ALERT_PROXIES
    listen: dict[str, str] = field(default_factory=dict)  # proxy name -> host:port
    created: list[str] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)

    def __enter__(self) -> NetStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> NetStack:
        self.session.trust_env = False  # an HTTP_PROXY must never reroute loopback calls
        try:
            self.testnet = TestnetThread(seed=self.seed, keys=list(self.keys), bar_ms=self.bar_ms,
                                         bar_real_ms=self.bar_real_ms, tick_ms=self.tick_ms, **self.testnet_kwargs)
            self.testnet.start()
            redis = provide_redis()
            if redis.handle is None:
                raise StackError(redis.reason, missing_service=True)
            self.redis = redis.handle
            toxi = provide_toxiproxy()
            if toxi.handle is None:
                raise StackError(toxi.reason, missing_service=True)
            self.toxiproxy = toxi.handle
            self.toxi = ToxiproxyClient(self.toxiproxy.url)
            suffix = f"{int(time.time() * 1000) % 10**8}-{id(self) % 10**5}"
            upstreams = {"rest": f"{LOOPBACK}:{self.testnet_port}", "ws": f"{LOOPBACK}:{self.testnet_port}",
                         "redis": f"{self.redis.host}:{self.redis.port}"}
            self.alerts = AlertReceivers().start()
            upstreams.update(self.alerts.upstreams)
            for name in (*PROXIES, *ALERT_PROXIES):
                full = f"gameday-{name}-{suffix}"
                self.listen[name] = self.toxi.create_proxy(full, f"{LOOPBACK}:0", upstreams[name])
                self.created.append(full)
        except StackError:
            self.stop()
            raise
        except Exception as exc:
            self.stop()
            raise StackError(f"net-mode stack did not start: {type(exc).__name__}: {exc}") from exc
        return self

    def stop(self) -> None:
        errors: list[str] = []
        if self.toxi is not None:
            for full in reversed(self.created):
                try:
                    self.toxi.delete_proxy(full)
                except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                    errors.append(str(exc))
            self.created.clear()
        for handle in (self.toxiproxy, self.redis):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.stop()
        self.toxiproxy = self.redis = None
        self.toxi = None
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts = None
        if self.testnet is not None:
            self.testnet.stop()
            self.testnet = None
        self.session.close()

    # -- addresses -------------------------------------------------------------------------
    @property
    def testnet_port(self) -> int:
        assert self.testnet is not None and self.testnet.handle is not None
        return int(self.testnet.handle.port)

    @property
    def direct_rest_url(self) -> str:
        assert self.testnet is not None and self.testnet.handle is not None
        return str(self.testnet.handle.rest_url)

    @property
    def admin_url(self) -> str:
        return self.direct_rest_url + "/__admin"

    @property
    def bot_rest_url(self) -> str:
        return f"http://{self.listen['rest']}"

    @property
    def bot_ws_url(self) -> str:
        return f"ws://{self.listen['ws']}/ws"

    @property
    def bot_redis_url(self) -> str:
        return f"redis://{self.listen['redis']}/0"

    def bot_alert_env(self) -> dict[str, str]:
        """The alert channels' environment for the bot, each channel through its proxy."""
        assert self.alerts is not None
        return self.alerts.bot_env({name: self.listen[name] for name in ALERT_PROXIES})

    def proxy_name(self, short: str) -> str:
        for full in self.created:
            if full.startswith(f"gameday-{short}-"):
                return full
        raise KeyError(short)

    # -- the testnet admin API -------------------------------------------------------------
    def admin(self, route: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        """Call the testnet admin API; raise StackError unless it answered ok."""
        url = f"{self.admin_url}/{route}"
        try:
            response = self.session.request(method, url, json=body if method != "GET" else None,
                                            timeout=ADMIN_TIMEOUT_S)
        except requests.RequestException as exc:
            raise StackError(f"testnet admin {method} {route}: {exc}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text[:200]}
        if response.status_code != 200 or not payload.get("ok"):
            raise StackError(f"testnet admin {method} {route} {body}: HTTP {response.status_code} "
                             f"{payload.get('error', payload)}")
        return payload.get("result")
