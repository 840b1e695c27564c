"""The real sinks against the harness's real local receivers (aiohttp HTTP, aiosmtpd SMTP)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.config import ConfigError
from bot.core.clock import WallClock
from bot.core.events import Event, EventBus
from bot.io.alert_sinks import (
    EmailSink,
    LogSink,
    SinkError,
    SlackSink,
    SmsSink,
    WebhookSink,
    build_sinks,
    sign,
    verify_signature,
)
from bot.io.alerts import Alert, AlertService, Redactor, load_alert_config
from harness.net.receivers import AlertReceivers

ALERT = Alert("run1-7", "breaker.drawdown.intraday.critical", "critical", "breaker tripped: <drawdown> & more",
              "breaker.tripped", 1_767_571_200_000, {"value": 3.1})


@pytest.fixture(scope="module")
def receivers() -> Iterator[AlertReceivers]:
    with AlertReceivers() as rx:
        yield rx


def _send(sink: Any, alert: Alert = ALERT) -> None:
    async def go() -> None:
        try:
            await sink.send(alert)
        finally:
            await sink.close()

    asyncio.run(go())


def _last(rx: AlertReceivers, channel: str, since: int) -> Any:
    got = rx.wait_for(lambda r: r.channel == channel, since=since, timeout=5)
    assert got is not None, rx.refused()
    return got


def test_slack_gets_an_incoming_webhook_message_with_the_alert_id(receivers: AlertReceivers) -> None:
    env = receivers.bot_env()
    since = len(receivers.receipts())
    _send(SlackSink(env["GAMEDAY_SLACK_WEBHOOK_URL"], 2.0))
    got = _last(receivers, "slack", since)
    assert got.alert_id == "run1-7"
    assert got.text == ":rotating_light: [CRITICAL] breaker tripped: &lt;drawdown&gt; &amp; more"


def test_the_webhook_is_signed_and_a_wrong_secret_is_refused(receivers: AlertReceivers) -> None:
    url = receivers.bot_env()["GAMEDAY_ALERT_WEBHOOK_URL"]
    since = len(receivers.receipts())
    _send(WebhookSink(url, receivers.webhook_secret, 2.0))
    got = _last(receivers, "webhook", since)
    assert got.alert_id == "run1-7" and got.payload["key"] == ALERT.key and got.payload["fields"] == {"value": 3.1}
    refused = len(receivers.refused())
    with pytest.raises(SinkError, match="HTTP 401"):
        _send(WebhookSink(url, "not-the-shared-secret", 2.0))
    assert receivers.refused()[refused:] == ["webhook: bad or missing signature"]


def test_signature_check_rejects_a_changed_body_and_a_stale_timestamp() -> None:
    stamp = str(int(time.time()))
    header = sign("s3cr3t", stamp, b'{"a":1}')
    assert verify_signature("s3cr3t", stamp, b'{"a":1}', header)
    assert not verify_signature("s3cr3t", stamp, b'{"a":2}', header)
    old = str(int(time.time()) - 3600)
    assert not verify_signature("s3cr3t", old, b'{"a":1}', sign("s3cr3t", old, b'{"a":1}'))


def test_email_goes_through_a_real_smtp_server_with_login(receivers: AlertReceivers) -> None:
    assert receivers.smtp is not None
    since = len(receivers.receipts())
    sink = EmailSink("127.0.0.1", receivers.smtp.port, "bot@gameday.invalid", ["oncall@gameday.invalid"], 3.0,
                     starttls=False, username=receivers.smtp_user, password=receivers.smtp_password)
    _send(sink)
    got = _last(receivers, "email", since)
    assert got.alert_id == "run1-7" and got.text.startswith("[gameday CRITICAL] breaker tripped")
    assert got.payload["to"] == ["oncall@gameday.invalid"] and "key: breaker.drawdown.intraday.critical" in \
        got.payload["body"]
    wrong = EmailSink("127.0.0.1", receivers.smtp.port, "bot@gameday.invalid", ["oncall@gameday.invalid"], 3.0,
                      starttls=False, username=receivers.smtp_user, password="wrong")
    with pytest.raises(SinkError, match="SMTPAuthenticationError"):
        _send(wrong)


def test_the_smtp_receiver_starts_on_another_port_when_its_probed_port_was_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under parallel runs another process can bind the port between the probe and aiosmtpd's bind."""
    import socket

    import harness.net.receivers as receivers_module

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real = receivers_module.free_loopback_port
    monkeypatch.setattr(receivers_module, "free_loopback_port", lambda: next(ports, None) or real())
    try:
        with AlertReceivers() as rx:
            assert rx.smtp is not None and rx.smtp.port != taken.getsockname()[1]
            sink = EmailSink("127.0.0.1", rx.smtp.port, "bot@gameday.invalid", ["oncall@gameday.invalid"], 3.0,
                             starttls=False, username=rx.smtp_user, password=rx.smtp_password)
            _send(sink)
            assert _last(rx, "email", 0).alert_id == "run1-7"
    finally:
        taken.close()


def test_sms_is_a_twilio_call_per_recipient_with_basic_auth(receivers: AlertReceivers) -> None:
    env = receivers.bot_env()
    since = len(receivers.receipts())
    _send(SmsSink(env["GAMEDAY_TWILIO_API_URL"], receivers.sms_sid, receivers.sms_token, "+15550000100",
                  ["+15550000101", "+15550000102"], 2.0))
    got = [r for r in receivers.receipts()[since:] if r.channel == "sms"]
    assert [r.payload["To"] for r in got] == ["+15550000101", "+15550000102"]
    assert all(r.alert_id == "run1-7" and r.text.startswith("gameday CRITICAL: ") for r in got)
    with pytest.raises(SinkError, match="HTTP 401"):
        _send(SmsSink(env["GAMEDAY_TWILIO_API_URL"], receivers.sms_sid, "bad-token", "+1", ["+2"], 2.0))


def test_a_failing_receiver_is_a_sink_error(receivers: AlertReceivers) -> None:
    assert receivers.http is not None
    receivers.http.failing["slack"] = 503
    try:
        with pytest.raises(SinkError, match="HTTP 503"):
            _send(SlackSink(receivers.bot_env()["GAMEDAY_SLACK_WEBHOOK_URL"], 2.0))
        _send(WebhookSink(receivers.bot_env()["GAMEDAY_ALERT_WEBHOOK_URL"], receivers.webhook_secret, 2.0))
    finally:
        receivers.http.failing.clear()


def test_the_log_sink_writes_one_line() -> None:
    out = io.StringIO()
    _send(LogSink(out))
    assert out.getvalue().count("\n") == 1 and "ALERT [critical]" in out.getvalue() and "id run1-7," in out.getvalue()


def test_channels_without_their_settings_are_left_out_with_what_to_set() -> None:
    config = load_alert_config()
    sinks, notes = build_sinks(config, lambda name: None, {}, Redactor(env={}))
    assert set(sinks) == {"log"}
    text = "; ".join(notes)
    assert "slack not configured (set the secret GAMEDAY_SLACK_WEBHOOK_URL" in text
    assert "email not configured (set GAMEDAY_SMTP_HOST" in text and "sms" not in text, "sms is optional"


def test_a_setting_that_is_set_but_unusable_is_a_config_error_that_never_shows_a_secret(
        receivers: AlertReceivers) -> None:
    env = receivers.bot_env()
    env["GAMEDAY_SMTP_PORT"] = "smtp"
    env["GAMEDAY_SLACK_WEBHOOK_URL"] = "hooks.slack.invalid/T0/B0/sk-very-secret-path"
    with pytest.raises(ConfigError) as info:
        build_sinks(load_alert_config(), env.get, env, Redactor(env={}))
    lines = [str(p) for p in info.value.problems]
    assert "alerts.yaml: channels.email.port: unusable value (got 'smtp' (from GAMEDAY_SMTP_PORT); expected a port " \
           "number 1-65535)" in lines
    assert any(line.startswith("alerts.yaml: channels.slack.url: unusable value (got (the secret "
                               "GAMEDAY_SLACK_WEBHOOK_URL)") for line in lines)
    assert "sk-very-secret-path" not in "\n".join(lines)


def test_end_to_end_no_secret_reaches_any_receiver(receivers: AlertReceivers) -> None:
    env = receivers.bot_env()

    async def go() -> list[Event]:
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        service = AlertService.build(load_alert_config(), bus, WallClock(), env=env,
                                     known_secrets=["gameday-FAKE-api-secret-0001"])
        service.start()
        bus.emit("killswitch.engaged", WallClock().now_ms(), mode="immediate", actor="ops",
                 reason=f"leak: secret gameday-FAKE-api-secret-0001 and {env['GAMEDAY_ALERT_WEBHOOK_SECRET']} "
                        f"and {env['GAMEDAY_SLACK_WEBHOOK_URL']}")
        assert await service.stop()
        return events

    since = len(receivers.receipts())
    events = asyncio.run(go())
    got = receivers.receipts()[since:]
    assert {r.channel for r in got} == {"slack", "email", "sms"}
    text = repr([(r.text, r.payload) for r in got]) + repr([e.fields for e in events if e.name.startswith("alert.")])
    for secret in ("gameday-FAKE-api-secret-0001", env["GAMEDAY_ALERT_WEBHOOK_SECRET"],
                   env["GAMEDAY_SLACK_WEBHOOK_URL"], env["GAMEDAY_TWILIO_AUTH_TOKEN"]):
        assert secret not in text
    assert "***" in text
