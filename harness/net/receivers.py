"""Real local receivers for the bot's alert channels, started by the harness (net mode, tests, benchmarks).

- `HttpReceiver`: one aiohttp server (in its own thread and loop) speaking three of the bot's
  channels: a Slack incoming webhook (`POST /slack/...`: JSON with `text`, answers `ok`), the
  generic webhook (`POST /webhook`: the HMAC-SHA256 signature and its timestamp are checked with
  the shared secret; a bad or stale one is refused with 401 and not counted as received) and a
  Twilio-compatible SMS API (`POST /twilio/2010-04-01/Accounts/<sid>/Messages.json`: HTTP basic
  auth sid:token, form To/From/Body; answers 201 like Twilio).
- `SmtpReceiver`: a real SMTP server (aiosmtpd) with AUTH (plain text allowed: loopback only).
- `AlertReceivers`: both, with the channel environment a bot needs to deliver to them
  (`bot_env(addresses)`); in net mode the addresses are Toxiproxy proxies in front of them, so a
  slow or dead receiver is a fault (harness/faults/alerts.py).

Every alert that arrives is a `Receipt` (channel, the bot's alert id, wall-clock arrival, what
was received), thread-safe to read while the receivers run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

from aiohttp import web

from bot.io.alert_sinks import TIMESTAMP_HEADER, verify_signature
from harness.services import free_loopback_port

LOOPBACK = "127.0.0.1"
SLACK_PATH = "/slack/T0GAMEDAY/B0GAMEDAY"
_SLACK_ID = re.compile(r"gameday alert `([^`]+)`")
_SMS_ID = re.compile(r"\(([^()\s]+)\)$")


@dataclass(frozen=True)
class Receipt:
    channel: str  # slack | webhook | email | sms
    alert_id: str | None
    received_ms: int
    text: str  # the human-readable part (Slack text, email subject, SMS body, webhook title)
    payload: Any = None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Log:
    receipts: list[Receipt] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why a request was not accepted
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, receipt: Receipt) -> None:
        with self.cond:
            self.receipts.append(receipt)
            self.cond.notify_all()

    def refuse(self, why: str) -> None:
        with self.cond:
            self.refused.append(why)


class HttpReceiver:
    def __init__(self, log: _Log, *, webhook_secret: str, sms_sid: str, sms_token: str) -> None:
        self.log = log
        self.webhook_secret = webhook_secret
        self.sms_sid, self.sms_token = sms_sid, sms_token
        self.failing: dict[str, int] = {}  # channel -> HTTP status every request of it gets (a broken receiver)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gameday-alert-http", daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self, timeout: float = 10.0) -> int:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout)
        return self.port

    async def _start(self) -> int:
        app = web.Application()
        app.add_routes([web.post("/slack/{tail:.*}", self._slack), web.post("/webhook", self._webhook),
                        web.post("/twilio/2010-04-01/Accounts/{sid}/Messages.json", self._sms)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def stop(self, timeout: float = 5.0) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout)
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    def _broken(self, channel: str) -> web.Response | None:
        status = self.failing.get(channel)
        return web.Response(status=status, text="gameday receiver set to fail") if status else None

    async def _slack(self, request: web.Request) -> web.Response:
        if (broken := self._broken("slack")) is not None:
            return broken
        try:
            body = await request.json()
            text = str(body["text"])
        except (ValueError, KeyError, TypeError):
            self.log.refuse("slack: not a Slack message (JSON with text)")
            return web.Response(status=400, text="invalid_payload")
        context = json.dumps(body.get("blocks", []))
        found = _SLACK_ID.search(context)
        self.log.add(Receipt("slack", found.group(1) if found else None, now_ms(), text, body))
        return web.Response(text="ok")

    async def _webhook(self, request: web.Request) -> web.Response:
        if (broken := self._broken("webhook")) is not None:
            return broken
        raw = await request.read()
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get("X-Gameday-Signature", "")
        if not verify_signature(self.webhook_secret, stamp, raw, signature):
            self.log.refuse("webhook: bad or missing signature")
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            body = json.loads(raw)
        except ValueError:
            self.log.refuse("webhook: body is not JSON")
            return web.json_response({"error": "not JSON"}, status=400)
        self.log.add(Receipt("webhook", body.get("id"), now_ms(), str(body.get("title")), body))
        return web.json_response({"ok": True})

    async def _sms(self, request: web.Request) -> web.Response:
        if (broken := self._broken("sms")) is not None:
            return broken
        expected = "Basic " + base64.b64encode(f"{self.sms_sid}:{self.sms_token}".encode()).decode()
        if request.match_info["sid"] != self.sms_sid or request.headers.get("Authorization") != expected:
            self.log.refuse("sms: bad account or credentials")
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        form = await request.post()
        body, to = str(form.get("Body", "")), str(form.get("To", ""))
        if not body or not to or not form.get("From"):
            self.log.refuse("sms: To, From and Body are required")
            return web.json_response({"code": 21604, "message": "missing parameter"}, status=400)
        found = _SMS_ID.search(body)
        self.log.add(Receipt("sms", found.group(1) if found else None, now_ms(), body, dict(form)))
        return web.json_response({"sid": "SM" + secrets.token_hex(16), "status": "queued", "to": to}, status=201)


class _SmtpHandler:
    def __init__(self, log: _Log) -> None:
        self.log = log

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.log.add(Receipt("email", message.get("X-Gameday-Alert-Id"), now_ms(), str(message.get("Subject")),
                             {"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "body": message.get_body(("plain",)).get_content() if message.get_body(("plain",))
                              else ""}))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    def __init__(self, log: _Log, username: str, password: str) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.login.decode() == username \
                and data.password.decode() == password
            if not ok:
                log.refuse("email: bad SMTP credentials")
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        # Plain-text AUTH is what a loopback test server needs; aiosmtpd warns about it per session.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning)
        self._make = lambda port: Controller(_SmtpHandler(log), hostname=LOOPBACK, port=port,
                                             authenticator=authenticate, auth_require_tls=False, auth_required=True,
                                             ready_timeout=10.0)
        self.port = 0
        self._controller: Any = None

    def start(self) -> int:
        # aiosmtpd binds the port it is given (it cannot report one the OS picked): a free port
        # can be taken between the probe and the bind under parallel runs, so try a few
        last: OSError | None = None
        for _ in range(3):
            self.port = free_loopback_port()
            self._controller = self._make(self.port)
            try:
                self._controller.start()
                return self.port
            except OSError as exc:
                last = exc
                self.stop()
        assert last is not None
        raise last

    def stop(self) -> None:
        if self._controller is not None:
            with contextlib.suppress(Exception):
                self._controller.stop()


@dataclass
class AlertReceivers:
    """The HTTP and SMTP receivers, their credentials, and what reached them."""

    webhook_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    smtp_user: str = "gameday-bot"
    smtp_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    sms_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    sms_token: str = field(default_factory=lambda: secrets.token_hex(16))
    log: _Log = field(default_factory=_Log)
    http: HttpReceiver | None = None
    smtp: SmtpReceiver | None = None

    def start(self) -> AlertReceivers:
        try:
            self.http = HttpReceiver(self.log, webhook_secret=self.webhook_secret, sms_sid=self.sms_sid,
                                     sms_token=self.sms_token)
            self.http.start()
            self.smtp = SmtpReceiver(self.log, self.smtp_user, self.smtp_password)
            self.smtp.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None
        if self.http is not None:
            self.http.stop()
            self.http = None

    def __enter__(self) -> AlertReceivers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def upstreams(self) -> dict[str, str]:
        """channel -> host:port of its receiver (what a proxy in front of it forwards to)."""
        assert self.http is not None and self.smtp is not None
        http = f"{LOOPBACK}:{self.http.port}"
        return {"slack": http, "webhook": http, "sms": http, "email": f"{LOOPBACK}:{self.smtp.port}"}

    def bot_env(self, addresses: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment config/alerts.yaml reads, pointing each channel at `addresses[channel]`
        (host:port; default: the receivers themselves)."""
        at = dict(self.upstreams, **(addresses or {}))
        smtp_host, smtp_port = at["email"].rsplit(":", 1)
        return {
            "GAMEDAY_SLACK_WEBHOOK_URL": f"http://{at['slack']}{SLACK_PATH}/{secrets.token_hex(12)}",
            "GAMEDAY_ALERT_WEBHOOK_URL": f"http://{at['webhook']}/webhook",
            "GAMEDAY_ALERT_WEBHOOK_SECRET": self.webhook_secret,
            "GAMEDAY_SMTP_HOST": smtp_host, "GAMEDAY_SMTP_PORT": smtp_port, "GAMEDAY_SMTP_STARTTLS": "false",
            "GAMEDAY_SMTP_USERNAME": self.smtp_user, "GAMEDAY_SMTP_PASSWORD": self.smtp_password,
            "GAMEDAY_ALERT_EMAIL_FROM": "gameday-bot@gameday.invalid",
            "GAMEDAY_ALERT_EMAIL_TO": "oncall@gameday.invalid",
            "GAMEDAY_TWILIO_API_URL": f"http://{at['sms']}/twilio", "GAMEDAY_TWILIO_ACCOUNT_SID": self.sms_sid,
            "GAMEDAY_TWILIO_AUTH_TOKEN": self.sms_token, "GAMEDAY_TWILIO_FROM": "+15550000100",
            "GAMEDAY_ALERT_SMS_TO": "+15550000101",
        }

    def receipts(self) -> list[Receipt]:
        with self.log.cond:
            return list(self.log.receipts)

    def refused(self) -> list[str]:
        with self.log.cond:
            return list(self.log.refused)

    def wait_for(self, predicate: Callable[[Receipt], bool], *, since: int = 0, timeout: float) -> Receipt | None:
        """The first receipt at index >= since matching predicate, waiting up to timeout s."""
        deadline = time.monotonic() + timeout
        with self.log.cond:
            while True:
                for receipt in self.log.receipts[since:]:
                    if predicate(receipt):
                        return receipt
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.log.cond.wait(min(remaining, 0.05))
