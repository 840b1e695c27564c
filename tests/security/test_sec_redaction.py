"""No loaded secret appears in any log line, exception text, alert event, evidence file or report.

The property test loads a generated secret through each source of the loader, then makes the bot's
output paths carry it - logging (message, args, exception), print to stderr (whole and in pieces),
uncaught exceptions, an alert event written by the live bot's EventWriter, the harness evidence
built from those events and the security gate's own evidence - and searches every byte written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.events import EventBus
from bot.io import redaction
from bot.io.secrets import default_loader, encrypt_env_file
from bot.live import EventWriter
from harness.evidence import append_evidence, tree_state, write_manifest
from harness.security.gate import write_evidence
from harness.security.model import FAIL, CheckResult, Finding

NAME = "GAMEDAY_API_SECRET"
SOURCES = ("env", "dotenv", "docker", "fernet")
# printable, no line breaks (a secret file or a .env line cannot hold one), no surrounding blanks
SECRET_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
                      min_size=8, max_size=40).map(str.strip).filter(lambda s: len(s) >= 8 and "\n" not in s)


def _load(secret: str, source: str, tmp: Path) -> str:
    env = {"GAMEDAY_SECRETS_DIR": str(tmp / "run-secrets"), "GAMEDAY_DOTENV": str(tmp / ".env")}
    if source == "env":
        env[NAME] = secret
    elif source == "dotenv":
        (tmp / ".env").write_text(f"{NAME}={secret}\n")
        (tmp / ".env").chmod(0o600)
    elif source == "docker":
        (tmp / "run-secrets").mkdir()
        (tmp / "run-secrets" / NAME.lower()).write_text(secret + "\n")
    else:
        key = Fernet.generate_key().decode()
        plain = tmp / "plain"
        plain.write_text(f"{NAME}={secret}\n")
        encrypt_env_file(plain, tmp / "s.enc", key)
        plain.unlink()
        env.update(GAMEDAY_ENCRYPTED_SECRETS=str(tmp / "s.enc"), ENCRYPTION_KEY=key)
    value = default_loader(env).get(NAME)
    assert value is not None
    return value


def _emit_everywhere(secret: str, tmp: Path, logger: logging.Logger) -> None:
    logger.warning("exchange said: key %s refused", secret)
    logger.error(f"retrying with {secret!r}")
    try:
        raise RuntimeError(f"auth failed for {secret}")
    except RuntimeError:
        logger.exception("order failed")
        traceback.print_exc()
        sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    print(f"bot: runtime error {secret}", file=sys.stderr)
    half = len(secret) // 2
    sys.stderr.write("split: " + secret[:half])
    sys.stderr.write(secret[half:] + "\n")
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(ValueError(secret)), name="worker")
    thread.start()
    thread.join()
    with open(tmp / "events.jsonl", "a", encoding="utf-8") as stream:
        bus = EventBus()
        bus.subscribe(EventWriter(stream))
        bus.subscribe(EventWriter(sys.stdout))
        bus.emit("killswitch.rejected", 1, reason=f"key {secret} rejected", actor=f"operator {secret}")
    events = [json.loads(line) for line in (tmp / "events.jsonl").read_text().splitlines()]
    run = tmp / "run"
    append_evidence(run, {"schema": "gameday.evidence/v1", "scenario": "leak-probe", "verdict": "fail",
                          "message": "; ".join(e["reason"] for e in events)})
    write_manifest(run, tree_state(), complete=True, exit_status=0)
    finding = Finding("probe", "HIGH", f"weak password {secret}")
    check = CheckResult("host.db_password", "gameday", FAIL, f"summary {secret}", reasons=[secret],
                        findings=[finding])
    write_evidence(tmp / "security", [check], {"note": secret}, tmp)


def _every_text(tmp: Path, streams: list[io.StringIO]) -> list[str]:
    """Everything written: the streams, and every file the probe produced (JSON also decoded, so
    that a \\u-escaped secret is found too)."""
    texts = [s.getvalue() for s in streams]
    for path in tmp.rglob("*"):
        if not path.is_file() or path.name in (".env", "s.enc") or path.parent.name == "run-secrets":
            continue  # the secret's own source
        raw = path.read_text(encoding="utf-8", errors="replace")
        texts.append(raw)
        if path.suffix == ".jsonl":
            texts += [json.dumps(json.loads(line), ensure_ascii=False) for line in raw.splitlines() if line.strip()]
        elif path.suffix in (".json", ".sarif"):
            texts.append(json.dumps(json.loads(raw), ensure_ascii=False))
    return texts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=SECRET_TEXT, source=st.sampled_from(SOURCES))
def test_no_loaded_secret_reaches_any_output(secret: str, source: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        out, err, log_before, log_after = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
        logger = logging.getLogger("gameday.test.redaction")
        logger.propagate = False
        early = logging.StreamHandler(log_before)
        early.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(early)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), redaction.install({}):
                loaded = _load(secret, source, tmp)
                late = logging.StreamHandler(log_after)  # added after install: the record factory covers it
                logger.addHandler(late)
                _emit_everywhere(loaded, tmp, logger)
                logger.removeHandler(late)
        finally:
            logger.removeHandler(early)
        texts = _every_text(tmp, [out, err, log_before, log_after])
        assert "rejected" in err.getvalue() + out.getvalue() or "rejected" in "".join(texts)
        leaked = [t[:200] for t in texts if loaded in t]
        assert not leaked, f"{source}: the secret {loaded!r} reached the output: {leaked}"
        assert redaction.MASK in err.getvalue() and redaction.MASK in log_before.getvalue() + log_after.getvalue()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the probe's own thread
def test_without_the_filter_the_probe_does_leak(tmp_path: Path) -> None:
    """The property test can fail: the same probe with redaction not installed leaks everywhere."""
    out, err, log = io.StringIO(), io.StringIO(), io.StringIO()
    logger = logging.getLogger("gameday.test.no-redaction")
    logger.propagate = False
    handler = logging.StreamHandler(log)
    logger.addHandler(handler)
    secret = "GAMEDAYFAKE-not-redacted-1234"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            _emit_everywhere(secret, tmp_path, logger)
    finally:
        logger.removeHandler(handler)
    assert secret in err.getvalue() and secret in log.getvalue()
    assert secret in (tmp_path / "events.jsonl").read_text()
    assert secret in (tmp_path / "security" / "security.json").read_text()


def test_redact_handles_escaped_forms_and_overlaps() -> None:
    redaction.register_secret('pa"ss\\wörd-1')
    redaction.register_secret("abcd")
    redaction.register_secret("abcdef12")
    text = json.dumps({"a": 'pa"ss\\wörd-1'}) + " " + repr('pa"ss\\wörd-1') + " abcdef12 abcd"
    assert redaction.redact(text) == '{"a": "***"} \'***\' *** ***'
    redaction.register_secret("abc")  # too short to redact meaningfully: ignored
    assert redaction.redact("abc") == "abc"


def test_redact_obj_keeps_structure() -> None:
    redaction.register_secret("GAMEDAYFAKE-x")
    redacted = redaction.redact_obj({"k": ["GAMEDAYFAKE-x", 1, {"GAMEDAYFAKE-x": None}]})
    assert redacted == {"k": ["***", 1, {"***": None}]}


def test_install_registers_secret_looking_environment_and_restores_everything() -> None:
    before = (sys.stdout, sys.stderr, sys.excepthook, threading.excepthook, logging.getLogRecordFactory())
    with redaction.install({"GAMEDAY_CONTROL_TOKEN": "GAMEDAYFAKE-control", "GAMEDAY_KILL_TOKEN_FILE": "state/kill",
                            "PATH": "/usr/bin", "DISABLE_TOKEN": "true"}):
        assert isinstance(sys.stderr, redaction.RedactingStream)
        assert redaction.redact("GAMEDAYFAKE-control state/kill /usr/bin true") == "*** state/kill /usr/bin true"
        with redaction.install():  # nested: free
            assert redaction.redact("GAMEDAYFAKE-control") == "***"
    assert (sys.stdout, sys.stderr, sys.excepthook, threading.excepthook, logging.getLogRecordFactory()) == before
    assert redaction.redact("GAMEDAYFAKE-control") == "GAMEDAYFAKE-control"


def test_the_bot_process_redacts_its_stderr(tmp_path: Path) -> None:
    """`python -m bot` installs redaction for its whole life: a token from the environment printed by
    a failing command does not reach stderr."""
    token = "GAMEDAYFAKE-token-in-env-0001"
    code = ("import sys; import bot.__main__ as m; "
            f"m._config_check = lambda args: print('leak {token}', file=sys.stderr) or 2; "
            "sys.exit(m.main(['config', 'check']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"GAMEDAY_KILL_TOKEN": token, "PATH": "/usr/bin:/bin"}, cwd=Path(__file__).parents[2])
    assert done.returncode == 2 and "leak ***" in done.stderr and token not in done.stderr
