"""The real alert channels: each `send()` returns only when the receiver confirmed the alert.

- log: one line on stderr (confirmed when written and flushed). Always there; ends every chain.
- slack: a Slack incoming webhook: POST JSON `{text, blocks}`; confirmed by a 2xx answer.
- webhook: POST the alert as JSON; `X-Gameday-Timestamp: <unix s>` and
  `X-Gameday-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the shared secret>`
  (the receiver recomputes it and checks the timestamp is recent); confirmed by a 2xx answer.
- email: SMTP (optional STARTTLS or implicit TLS, optional login) with smtplib in a worker
  thread, so the bot's event loop never waits on it; confirmed when the server accepted the
  message for every recipient.
- sms: a Twilio-compatible REST call per recipient (`POST {api_url}/2010-04-01/Accounts/{sid}/
  Messages.json`, form To/From/Body, HTTP basic auth sid:token); confirmed by a 2xx answer.

`build_sinks` resolves config/alerts.yaml's values (`{secret: ...}` through the secrets lookup,
`{env: ...}` from the environment): a channel with a missing value is left out with a note that
names what to set; a value that is set but unusable (a port that is not a number, a URL that is
not http(s)) is a ConfigError. Every secret resolved is added to the redactor.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import IO, Any

import aiohttp

from bot.config import ConfigError, Problem
from bot.io.alerts import (
    LAST_RESORT,
    Alert,
    AlertConfig,
    ChannelConfig,
    EmailChannel,
    EnvRef,
    LogChannel,
    Redactor,
    SecretLookup,
    SecretRef,
    Sink,
    SlackChannel,
    SmsChannel,
    Value,
    WebhookChannel,
)

TIMESTAMP_HEADER = "X-Gameday-Timestamp"
ALERT_ID_HEADER = "X-Gameday-Alert-Id"
ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:",
         "emergency": ":sos:"}


class SinkError(Exception):
    """The receiver did not confirm the alert (the message says what it answered)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature header value for `body` sent at `timestamp` (unix seconds, text)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, *, now_s: float | None = None,
                     tolerance_s: float = 300.0) -> bool:
    """A receiver's check: the signature matches and the timestamp is within tolerance."""
    try:
        age = abs((time.time() if now_s is None else now_s) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), header)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LogSink:
    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    async def send(self, alert: Alert) -> None:
        out = self.stream if self.stream is not None else sys.stderr
        out.write(f"ALERT [{alert.severity}] {alert.title} (key {alert.key}, id {alert.id}, "
                  f"raised {_iso(alert.raised_ms)})\n")
        out.flush()

    async def close(self) -> None:
        return None


class _HttpSink:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                                  trust_env=False)
        return self._session

    async def _post(self, url: str, **kwargs: Any) -> None:
        async with self.session().post(url, **kwargs) as response:
            text = await response.text()
            if not 200 <= response.status < 300:
                raise SinkError(f"HTTP {response.status}: {' '.join(text.split())[:120]}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    head = f"{ICONS.get(alert.severity, '')} [{alert.severity.upper()}] {_slack_escape(alert.title)}".strip()
    return {"text": head, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text":
                                          f"gameday alert `{alert.id}` · key `{_slack_escape(alert.key)}` · "
                                          f"{_iso(alert.raised_ms)}"}]},
    ]}


class SlackSink(_HttpSink):
    def __init__(self, url: str, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.url = url

    async def send(self, alert: Alert) -> None:
        await self._post(self.url, json=slack_payload(alert))


class WebhookSink(_HttpSink):
    def __init__(self, url: str, secret: str, timeout_s: float, header: str = "X-Gameday-Signature") -> None:
        super().__init__(timeout_s)
        self.url, self.secret, self.header = url, secret, header

    async def send(self, alert: Alert) -> None:
        body = json.dumps({"source": "gameday", **alert.to_dict()}, sort_keys=True, separators=(",", ":"),
                          default=str).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp, ALERT_ID_HEADER: alert.id,
                   self.header: sign(self.secret, stamp, body)}
        await self._post(self.url, data=body, headers=headers)


class SmsSink(_HttpSink):
    def __init__(self, api_url: str, account_sid: str, auth_token: str, sender: str, recipients: list[str],
                 timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.sender, self.recipients = sender, recipients

    async def send(self, alert: Alert) -> None:
        body = f"gameday {alert.severity.upper()}: {alert.title}"[:300] + f" ({alert.id})"
        for to in self.recipients:
            await self._post(self.url, data={"To": to, "From": self.sender, "Body": body},
                             headers={"Authorization": self.auth})


@dataclass
class EmailSink:
    host: str
    port: int
    sender: str
    recipients: list[str]
    timeout_s: float
    starttls: bool = True
    use_ssl: bool = False
    username: str = ""
    password: str | None = None
    sent: int = field(default=0, init=False)

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[gameday {alert.severity.upper()}] {alert.title}"[:200]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg[ALERT_ID_HEADER] = alert.id
        fields = "\n".join(f"  {k}: {v}" for k, v in alert.fields.items())
        msg.set_content(f"{alert.title}\n\nseverity: {alert.severity}\nkey: {alert.key}\nalert id: {alert.id}\n"
                        f"raised: {_iso(alert.raised_ms)}\nevent: {alert.event}\n" + (f"fields:\n{fields}\n"
                                                                                       if fields else ""))
        return msg

    def _send_blocking(self, msg: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            if self.starttls and not self.use_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            refused = smtp.send_message(msg)
            if refused:
                raise SinkError(f"the server refused {sorted(refused)}")
        except smtplib.SMTPException as exc:
            raise SinkError(f"{type(exc).__name__}: {exc}") from None
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        self.sent += 1

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self._send_blocking, self.message(alert))

    async def close(self) -> None:
        return None


# --- building the sinks from config ------------------------------------------------------


class _Missing(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass
class _Resolver:
    channel: str
    file: str
    lookup: SecretLookup
    env: Mapping[str, str]
    redactor: Redactor
    problems: list[Problem]

    def text(self, key: str, value: Value | None, *, required: bool = True) -> str | None:
        if value is None:
            return None
        if isinstance(value, SecretRef):
            got = self.lookup(value.name)
            if got:
                self.redactor.add(got)
                return got.strip()
            if value.optional or not required:
                return None
            raise _Missing(f"set the secret {value.name}")
        if isinstance(value, EnvRef):
            got = self.env.get(value.name)
            if got:
                return got.strip()
            if value.default is not None:
                return value.default
            if not required:
                return None
            raise _Missing(f"set {value.name}")
        return value

    def where(self, value: Any) -> str:
        if isinstance(value, SecretRef):
            return f"(the secret {value.name})"
        if isinstance(value, EnvRef):
            return f"{self.env.get(value.name, value.default)!r} (from {value.name})"
        return repr(value)

    def bad(self, key: str, value: Any, expected: str) -> None:
        self.problems.append(Problem(self.file, f"channels.{self.channel}.{key}", "unusable value",
                                     self.where(value), expected))

    def url(self, key: str, value: Value) -> str:
        text = self.text(key, value) or ""
        if not text.startswith(("http://", "https://")):
            self.bad(key, value, "an http:// or https:// URL")
        return text

    def number(self, key: str, value: Value) -> int:
        text = self.text(key, value) or ""
        if not text.isdigit() or not 0 < int(text) < 65536:
            self.bad(key, value, "a port number 1-65535")
            return 0
        return int(text)

    def flag(self, key: str, value: Value) -> bool:
        text = (self.text(key, value) or "").lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            self.bad(key, value, "true or false")
        return text in ("true", "1", "yes")

    def addresses(self, key: str, value: Value | tuple[Value, ...]) -> list[str]:
        items = value if isinstance(value, tuple) else (value,)
        out: list[str] = []
        for item in items:
            out += [a.strip() for a in (self.text(key, item) or "").split(",") if a.strip()]
        if not out:
            raise _Missing(f"set {key} (one or more, comma-separated)")
        return out


def _sink(name: str, ch: ChannelConfig, r: _Resolver) -> Sink:
    timeout = ch.timeout_seconds
    if isinstance(ch, LogChannel):
        return LogSink()
    if isinstance(ch, SlackChannel):
        return SlackSink(r.url("url", ch.url), timeout)
    if isinstance(ch, WebhookChannel):
        url = r.url("url", ch.url)
        return WebhookSink(url, r.text("secret", ch.secret) or "", timeout, ch.signature_header)
    if isinstance(ch, EmailChannel):
        host = r.text("host", ch.host) or ""
        sender = r.text("sender", ch.sender) or ""
        recipients = r.addresses("recipients", ch.recipients)
        return EmailSink(host, r.number("port", ch.port), sender, recipients, timeout,
                         starttls=r.flag("starttls", ch.starttls), use_ssl=r.flag("ssl", ch.ssl),
                         username=r.text("username", ch.username, required=False) or "",
                         password=r.text("password", ch.password, required=False))
    if isinstance(ch, SmsChannel):
        return SmsSink(r.url("api_url", ch.api_url), r.text("account_sid", ch.account_sid) or "",
                       r.text("auth_token", ch.auth_token) or "", r.text("sender", ch.sender) or "",
                       r.addresses("recipients", ch.recipients), timeout)
    raise AssertionError(f"channel type {ch.type!r} has no sink")


def build_sinks(config: AlertConfig, lookup: SecretLookup, env: Mapping[str, str],
                redactor: Redactor) -> tuple[dict[str, Sink], list[str]]:
    """The configured channels' sinks, and notes on the ones left out (what to set)."""
    problems: list[Problem] = []
    sinks: dict[str, Sink] = {}
    notes: list[str] = []
    for name, ch in config.channels.items():
        resolver = _Resolver(name, config.source, lookup, env, redactor, problems)
        try:
            sinks[name] = _sink(name, ch, resolver)
        except _Missing as missing:
            if not ch.optional:
                notes.append(f"{name} not configured ({missing.what}; its alerts go to "
                             f"{ch.fallback or LAST_RESORT})")
    if problems:
        raise ConfigError(problems)
    return sinks, notes
