"""Kill switch: modes, authentication, escalation, graceful timeout, persistence."""

from __future__ import annotations

import hmac
import json

import pytest
from breaker_support import MINUTE, POLICIES, PROFILES, T0
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.clock import VirtualClock
from bot.core.events import Event, EventBus
from bot.core.killswitch import KillStatus, KillSwitch, marker_snapshot

TOKEN = "s3cret-operator-token"


def verify(credential: str | None) -> bool:
    return credential is not None and hmac.compare_digest(credential.encode(), TOKEN.encode())


def make(profile: str = "futures") -> tuple[KillSwitch, VirtualClock, list[Event]]:
    clock = VirtualClock(T0)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    return KillSwitch(POLICIES[profile], bus, clock, verify), clock, events


@pytest.mark.parametrize("profile", PROFILES)
def test_immediate_cancels_flattens_and_halts(profile: str) -> None:
    ks, _, events = make(profile)
    res = ks.engage("immediate", "security breach", "alice", TOKEN)
    assert res.accepted and res.cancel_all and res.flatten and res.halt and res.mode == "immediate"
    assert [e.to_dict() for e in events] == [
        {"name": "killswitch.engaged", "ts_ms": T0, "mode": "immediate", "reason": "security breach",
         "actor": "alice"}]
    s = ks.status()
    assert s.engaged and s.mode == "immediate" and s.flatten_requested and s.blocks_entries


@pytest.mark.parametrize("profile", PROFILES)
def test_graceful_blocks_entries_and_flattens_at_timeout(profile: str) -> None:
    ks, clock, _ = make(profile)
    timeout = int(POLICIES[profile].kill_switch.graceful_timeout_minutes * MINUTE)
    res = ks.engage("graceful", "model deployment", "bob", TOKEN)
    assert res.accepted and res.halt and not res.flatten and not res.cancel_all
    assert res.deadline_ms == T0 + timeout
    assert ks.status().blocks_entries and not ks.status().flatten_requested
    clock.advance(timeout - 1)
    assert ks.on_timer(clock.now_ms()) is False
    clock.advance(1)
    assert ks.on_timer(clock.now_ms()) is True
    assert ks.status().flatten_requested
    assert ks.on_timer(clock.now_ms() + 1) is False  # reported once; status keeps the request


def test_graceful_deadline_fires_through_virtual_clock_timer() -> None:
    ks, clock, _ = make()
    res = ks.engage("graceful", "deploy", "bob", TOKEN)
    assert res.deadline_ms is not None
    fired: list[int] = []
    clock.call_at(res.deadline_ms, lambda: fired.append(clock.now_ms()) if ks.on_timer(clock.now_ms()) else None)
    clock.advance(int(POLICIES["futures"].kill_switch.graceful_timeout_minutes * MINUTE) + 5 * MINUTE)
    assert fired == [res.deadline_ms]


def test_pause_blocks_entries_keeps_managing_positions() -> None:
    ks, _, _ = make()
    res = ks.engage("pause", "investigating", "carol", TOKEN)
    assert res.accepted and res.halt and not res.flatten and not res.cancel_all and res.deadline_ms is None
    assert ks.on_timer(T0 + 10**9) is False


@pytest.mark.parametrize("credential", [None, "", "wrong-token", TOKEN + "x"])
@pytest.mark.parametrize("action", ["engage", "clear"])
def test_bad_or_missing_credentials_rejected_and_change_nothing(credential: str | None, action: str) -> None:
    ks, _, events = make()
    if action == "clear":
        ks.engage("pause", "ops", "alice", TOKEN)
    events.clear()
    before = ks.status()
    if action == "engage":
        res = ks.engage("immediate", "prank", "mallory", credential)
    else:
        res = ks.clear("mallory", credential)
    assert not res.accepted
    assert res.unauthorized  # counted as an unauthorized access attempt (red_flags), a clear as well
    assert ks.status() == before
    assert [e.name for e in events] == ["killswitch.rejected"]
    reason = events[0].fields["reason"]
    assert ("missing credentials" if not credential else "bad credentials") in reason
    assert TOKEN not in reason and (not credential or credential not in reason)


def test_verifier_that_raises_rejects() -> None:
    clock, bus = VirtualClock(T0), EventBus()

    def broken(_: str | None) -> bool:
        raise RuntimeError("vault down")

    ks = KillSwitch(POLICIES["futures"], bus, clock, broken)
    assert not ks.engage("immediate", "x", "a", TOKEN).accepted
    assert ks.status() == KillStatus(engaged=False)


def test_unknown_mode_rejected() -> None:
    ks, _, events = make()
    assert not ks.engage("nuke", "x", "a", TOKEN).accepted
    assert not ks.status().engaged and [e.name for e in events] == ["killswitch.rejected"]


def test_an_unknown_mode_from_an_authenticated_operator_is_not_an_unauthorized_attempt() -> None:
    """Only a credential refusal counts toward the unauthorized-access red flag: a typo must not stop the bot."""
    ks, _, _ = make()
    res = ks.engage("nuke", "x", "alice", TOKEN)
    assert not res.accepted and "unknown mode 'nuke'" in res.reason
    assert res.unauthorized is False


@pytest.mark.parametrize("credential", [TOKEN, "wrong-token"])
def test_a_refused_request_on_a_disengaged_switch_does_not_report_trading_halted(credential: str) -> None:
    ks, _, _ = make()
    res = ks.engage("nuke" if credential == TOKEN else "immediate", "x", "a", credential)
    assert not res.accepted
    assert (res.halt, res.mode, res.flatten, res.cancel_all) == (False, None, False, False)


def test_escalates_never_downgrades_silently() -> None:
    ks, clock, events = make()
    assert ks.engage("pause", "p", "a", TOKEN).accepted
    clock.advance(MINUTE)
    g = ks.engage("graceful", "g", "a", TOKEN)
    assert g.accepted and ks.status().mode == "graceful"
    clock.advance(MINUTE)
    again = ks.engage("graceful", "g2", "a", TOKEN)
    assert again.deadline_ms == g.deadline_ms  # a repeated graceful never extends the deadline
    assert ks.engage("immediate", "i", "a", TOKEN).accepted and ks.status().mode == "immediate"
    n = len(events)
    for weaker in ("pause", "graceful"):
        res = ks.engage(weaker, "w", "a", TOKEN)
        assert not res.accepted and "immediate" in res.reason
        assert res.halt and res.mode == "immediate"  # the refusal still tells the caller trading is halted
    assert ks.status().mode == "immediate" and len(events) == n
    assert ks.status().engaged_at_ms == T0


def test_clear_with_credentials() -> None:
    ks, _, events = make()
    ks.engage("immediate", "x", "alice", TOKEN)
    res = ks.clear("alice", TOKEN)
    assert res.accepted and not ks.status().engaged
    assert events[-1].name == "killswitch.cleared" and events[-1].fields["actor"] == "alice"


def test_snapshot_restore_keeps_mode_and_deadline() -> None:
    ks, clock, _ = make()
    res = ks.engage("graceful", "deploy", "bob", TOKEN)
    snap = json.loads(json.dumps(ks.snapshot()))
    clock2, bus2 = VirtualClock(T0 + MINUTE), EventBus()
    events2: list[Event] = []
    bus2.subscribe(events2.append)
    fresh = KillSwitch(POLICIES["futures"], bus2, clock2, verify)
    fresh.restore(snap)
    assert fresh.status() == ks.status() and events2 == []
    assert res.deadline_ms is not None
    assert fresh.on_timer(res.deadline_ms) is True
    with pytest.raises(ValueError, match="mode"):
        fresh.restore({**snap, "mode": "bogus"})


@pytest.mark.parametrize(("snapshot", "match"), [
    ({"version": 2, "engaged": True, "mode": "pause", "reason": "x", "actor": "a", "engaged_at_ms": T0,
      "deadline_ms": None, "flatten_requested": False}, "version 2"),
    ({"version": 1, "engaged": True, "mode": None, "reason": "x", "actor": "a", "engaged_at_ms": T0,
      "deadline_ms": None, "flatten_requested": False}, "engaged without a mode"),
])
def test_restore_refuses_a_snapshot_it_cannot_stand_for(snapshot: dict[str, object], match: str) -> None:
    """A snapshot of another version, or an engagement without a mode, is refused, not half taken in."""
    ks, _, _ = make()
    with pytest.raises(ValueError, match=match):
        ks.restore(snapshot)


def test_no_auth_policy_accepts_without_credential() -> None:
    p = POLICIES["futures"]
    policy = p.model_copy(update={"kill_switch": p.kill_switch.model_copy(update={"require_auth": False})})
    ks = KillSwitch(policy, EventBus(), VirtualClock(T0), verify)
    assert ks.engage("pause", "x", "a", None).accepted


# --- the emergency marker file: one function decides what any content stands for -----------------

_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
_SNAPSHOT_KEYS = ["version", "engaged", "mode", "reason", "actor", "engaged_at_ms", "deadline_ms", "flatten_requested"]


def _restores(snapshot: dict[str, object]) -> KillStatus:
    ks, _, _ = make()
    ks.restore(snapshot)
    return ks.status()


def _emergency(snapshot: dict[str, object]) -> bool:
    return str(snapshot["reason"]).startswith("emergency marker state/EMERGENCY_STOP: ")


@settings(max_examples=400, deadline=None)
@given(content=st.binary(max_size=300))
def test_any_marker_bytes_engage_the_kill_switch_and_never_raise(content: bytes) -> None:
    snapshot = marker_snapshot(content, None, "state/EMERGENCY_STOP", T0)
    status = _restores(snapshot)
    assert status.engaged
    assert _emergency(snapshot) and status.mode == "immediate" and status.flatten_requested


@settings(max_examples=400, deadline=None)
@given(data=st.dictionaries(st.sampled_from(_SNAPSHOT_KEYS + ["extra"]),
                            _JSON_SCALARS | st.sampled_from(["immediate", "graceful", "pause", 1, True]),
                            max_size=9))
def test_partial_or_wrong_snapshots_engage_immediate_with_the_problem_named(data: dict[str, object]) -> None:
    snapshot = marker_snapshot(json.dumps(data).encode(), None, "state/EMERGENCY_STOP", T0)
    status = _restores(snapshot)
    assert status.engaged
    if _emergency(snapshot):
        assert status.mode == "immediate" and status.flatten_requested and status.engaged_at_ms == T0
        assert status.actor == "marker"
    else:  # taken as written: only a complete snapshot of an engaged kill switch is
        assert data["engaged"] is True and data["version"] == 1
        assert {k: data[k] for k in _SNAPSHOT_KEYS} == snapshot


@pytest.mark.parametrize("content,problem", [
    (b'{"engaged": true}', "missing version, mode, reason, actor, engaged_at_ms, deadline_ms, flatten_requested"),
    (b"{}", "missing version, engaged"),
    (b"\x00\xff garbage", "not JSON"),
    (b"[1, 2]", "JSON list, not an object"),
    (b'{"version": 1, "engaged": false, "mode": null, "reason": null, "actor": null, "engaged_at_ms": null, '
     b'"deadline_ms": null, "flatten_requested": false}', "engaged is False"),
    (b'{"version": 1, "engaged": true, "mode": "immediate", "reason": "x", "actor": "a", "engaged_at_ms": 1, '
     b'"deadline_ms": null, "flatten_requested": false}', "immediate without flatten_requested"),
    (b'{"version": 1, "engaged": true, "mode": "graceful", "reason": "x", "actor": "a", "engaged_at_ms": 1, '
     b'"deadline_ms": null, "flatten_requested": false}', "graceful without a deadline"),
    (b'{"version": 1, "engaged": true, "mode": "pause", "reason": "x", "actor": "a", "engaged_at_ms": 1.5, '
     b'"deadline_ms": null, "flatten_requested": false}', "engaged_at_ms is 1.5, not whole milliseconds"),
    (None, "it could not be read"),
])
def test_hand_written_and_partial_markers_engage_immediate_naming_the_problem(content: bytes | None,
                                                                              problem: str) -> None:
    snapshot = marker_snapshot(content, None, "m", T0)
    status = _restores(snapshot)
    assert (status.engaged, status.mode, status.flatten_requested, status.actor) == (True, "immediate", True, "marker")
    assert status.reason is not None and problem in status.reason and "strictest mode" in status.reason


def test_a_marker_that_is_not_json_quotes_at_most_80_characters_of_the_parse_error() -> None:
    content = b"a" * 100_000 + b"\xc3a"  # the decoder's message names the position: 82 characters
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        error = str(exc)
    assert len(error) > 81
    reason = marker_snapshot(content, None, "m", T0)["reason"]
    assert f"(UnicodeDecodeError: {error[:80]})" in reason


def test_a_complete_marker_is_taken_as_written() -> None:
    ks, _, _ = make()
    ks.engage("graceful", "deploy", "alice", TOKEN)
    written = ks.snapshot()
    assert marker_snapshot(json.dumps(written).encode(), None, "m", T0 + 5) == written


def test_escalating_a_marker_without_its_engaging_time_records_when_it_was_engaged() -> None:
    """A hand-written complete marker may leave engaged_at_ms null; the next engagement dates it."""
    ks, clock, _ = make()
    ks.restore(marker_snapshot(b'{"version": 1, "engaged": true, "mode": "pause", "reason": "x", "actor": "a", '
                               b'"engaged_at_ms": null, "deadline_ms": null, "flatten_requested": false}',
                               None, "m", T0))
    assert ks.status().engaged_at_ms is None
    clock.advance(MINUTE)
    assert ks.engage("immediate", "i", "a", TOKEN).accepted
    assert ks.status().engaged_at_ms == T0 + MINUTE
