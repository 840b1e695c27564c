"""The audit chain anchored apart from the log: `audit verify` finds a cut tail and a rewrite, and
an HMAC key finds an edit at its record even without an anchor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.io.audit import AuditLog, verify
from bot.io.audit_anchor import AUDIT_HMAC_KEY_NAME, AnchorError, anchor_verdict, audit_hmac_key, main_verify
from bot.io.state import open_store
from harness.evidence import TreeState, write_manifest
from tests.io.test_alerts import Rig

T0 = 1_700_000_000_000
KEY = "k" * 40  # obviously fake


def _write(path: Path, n: int, *, key: bytes | None = None, start: int = 1, tag: str = "a") -> AuditLog:
    log = AuditLog(path, hmac_key=key)
    for i in range(start, start + n):
        log.append("bot", "step", {"i": i, "tag": tag}, T0 + i)
    return log


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main_verify(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture(autouse=True)
def _no_key_and_no_default_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(AUDIT_HMAC_KEY_NAME, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./state/bot.db: no anchor unless a test gives one


def _state_with_head(tmp_path: Path, seq: int, digest: str) -> str:
    target = str(tmp_path / "bot.db")
    store = open_store(target)
    store.put("bot", {"generation": 1, "audit_head": {"seq": seq, "hash": digest}})
    store.close()
    return target


def test_a_truncated_log_with_an_anchor_in_the_state_store_says_truncated_after_seq_n(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write(path, 6)
    state = _state_with_head(tmp_path, log.seq, log.head)
    log.close()
    code, out = _run(capsys, str(path), "--state", state)
    assert code == 0 and "anchored: head seq 6 matches state store" in out
    path.write_bytes(b"".join(_lines(path)[:4]))  # cut at a record boundary: a valid shorter chain
    code, out = _run(capsys, str(path), "--state", state)
    assert code == 1
    assert "truncated after seq 4" in out and "records 5..6 are gone" in out


def test_without_any_anchor_the_cut_passes_but_verify_says_head_unanchored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 6).close()
    path.write_bytes(b"".join(_lines(path)[:4]))
    code, out = _run(capsys, str(path))
    assert code == 0 and "head unanchored" in out


def test_a_log_rewritten_from_seq_m_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write(path, 3)
    at3 = f"{log.seq}:{log.head}"
    log.append("bot", "step", {"i": 4}, T0 + 4)
    log.append("bot", "step", {"i": 5}, T0 + 5)
    at5 = f"{log.seq}:{log.head}"
    log.close()
    kept = b"".join(_lines(path)[:3])
    path.write_bytes(kept)  # rewrite records 4 and 5 with a valid chain: the file alone cannot tell
    forged = AuditLog(path)
    forged.append("bot", "step", {"i": 4, "forged": True}, T0 + 4)
    forged.append("bot", "step", {"i": 5}, T0 + 5)
    forged.close()
    assert verify(path).ok
    code, out = _run(capsys, str(path), "--anchor", at3, "--anchor", at5)
    assert code == 1
    assert "rewritten from seq 4:" in out and "says seq 5 has hash" in out and "last matching anchor: seq 3" in out


def test_the_verdict_against_anchors_can_fail_and_pass(tmp_path: Path) -> None:
    from bot.io.audit_anchor import Anchor

    path = tmp_path / "audit.jsonl"
    log = _write(path, 3)
    head = (log.seq, log.head)
    log.close()
    result = verify(path)
    assert anchor_verdict(path, result, [Anchor(*head, "x")])[0] is True
    assert anchor_verdict(path, result, [Anchor(3, "0" * 64, "x")]) [1].startswith("rewritten from seq 1")
    assert anchor_verdict(path, result, [Anchor(4, "0" * 64, "x")])[1].startswith("truncated after seq 3")
    ok, text = anchor_verdict(path, result, [Anchor(2, _hash_at(path, 2), "x")])
    assert ok and "anchored up to seq 2" in text and "1 later records" in text


def _hash_at(path: Path, seq: int) -> str:
    return str(json.loads(_lines(path)[seq - 1])["hash"])


def test_with_the_hmac_key_an_edited_record_fails_at_that_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5, key=KEY.encode()).close()
    monkeypatch.setenv(AUDIT_HMAC_KEY_NAME, KEY)
    code, out = _run(capsys, str(path))
    assert code == 0 and "authenticated with GAMEDAY_AUDIT_HMAC_KEY" in out
    # edit record 3 and re-chain everything after it, with a key that is not the audit key
    path.write_bytes(b"".join(_lines(path)[:2]))
    _write(path, 3, key=b"x" * 40, start=3, tag="edited").close()
    monkeypatch.delenv(AUDIT_HMAC_KEY_NAME)
    assert _run(capsys, str(path))[0] == 0  # without the key the chain looks intact
    monkeypatch.setenv(AUDIT_HMAC_KEY_NAME, KEY)
    code, out = _run(capsys, str(path))
    assert code == 1 and f"{path}:3: HMAC does not match: rewritten from seq 3" in out


def test_with_the_hmac_key_records_written_without_it_fail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 2, key=KEY.encode()).close()
    _write(path, 1, start=3).close()  # appended by someone without the key
    result = verify(path, hmac_key=KEY.encode())
    assert not result.ok and result.first_bad_line == 3 and "rewritten from seq 3" in str(result.reason)
    plain = tmp_path / "plain.jsonl"
    _write(plain, 2).close()
    assert "no record carries an HMAC" in str(verify(plain, hmac_key=KEY.encode()).reason)
    before = tmp_path / "before.jsonl"
    _write(before, 2).close()
    _write(before, 2, key=KEY.encode(), start=3).close()  # the key was configured later
    late = verify(before, hmac_key=KEY.encode())
    assert late.ok and late.unauthenticated == 2


def test_a_short_hmac_key_is_refused_with_the_fix() -> None:
    class Loader:
        def get(self, name: str) -> str | None:
            return "short" if name == AUDIT_HMAC_KEY_NAME else None

    with pytest.raises(AnchorError, match="at least 32"):
        audit_hmac_key(Loader())


def test_each_evidence_set_anchors_its_audit_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evidence = tmp_path / "set"
    run = evidence / "net" / "some_scenario"
    run.mkdir(parents=True)
    log = _write(run / "audit.jsonl", 4)
    head = {"seq": log.seq, "hash": log.head}
    log.close()
    manifest = json.loads(write_manifest(evidence, TreeState("0" * 40, False, None), complete=True,
                                         exit_status=0).read_text())
    assert manifest["audit_anchors"] == {"net/some_scenario/audit.jsonl": head}
    copy = tmp_path / "audit.jsonl"
    copy.write_bytes(b"".join(_lines(run / "audit.jsonl")[:3]))  # the set's only log, cut
    code, out = _run(capsys, str(copy), "--evidence", str(evidence))
    assert code == 1 and "truncated after seq 3" in out and "evidence manifest" in out


def test_every_heartbeat_carries_the_chain_head() -> None:
    rig = Rig(heartbeat_ms=60_000)
    rig.router.audit_head = lambda: (7, "ab" * 32)
    rig.run(60_000)
    [beat] = rig.of("alert.sent", key="heartbeat")
    assert beat.fields["title"].endswith("audit head 7:" + "ab" * 32)
