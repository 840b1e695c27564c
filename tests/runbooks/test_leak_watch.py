"""The leak watch finds the bot's secret by fingerprint in logs, git (tree and history) and drop
folders, never keeps or reports the secret, and the bot's own logs cannot carry it."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.io import redaction
from bot.io.leak_watch import Fingerprint, LeakConfigError, LeakPlaces, LeakWatch, find_in_text, load_leak_config

SECRET = "gameday-FAKE-secret-0000-not-a-real-key"
KEY = "gameday-sim-key"


def watch(tmp_path: Path) -> LeakWatch:
    places = LeakPlaces([tmp_path / "logs"], [tmp_path / "repo"], [tmp_path / "paste"])
    return LeakWatch([Fingerprint.of(KEY, SECRET)], places, root=tmp_path)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@invalid", *args],
                   check=True, capture_output=True)


def test_log_line_found_with_its_line_number_and_only_once(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "bot.log"
    log.parent.mkdir()
    log.write_text("start\nINFO ok\n")
    w = watch(tmp_path)
    assert w.scan("log") == []
    with open(log, "a") as fh:
        fh.write(f"INFO configured secret={SECRET}\n")
    [finding] = w.scan("log")
    assert finding.to_fields() == {"key_id": KEY, "where": "log:logs/bot.log:3"}
    assert w.scan("log") == []  # reported once


def test_one_character_off_is_not_the_secret(tmp_path: Path) -> None:
    near = SECRET[:-1] + ("x" if SECRET[-1] != "x" else "y")
    assert list(find_in_text(f"secret={near}\n{SECRET[1:]}\n", [Fingerprint.of(KEY, SECRET)])) == []


def test_the_secret_is_never_kept_or_reported(tmp_path: Path) -> None:
    fp = Fingerprint.of(KEY, SECRET)
    assert SECRET not in repr(fp) and SECRET.encode() not in fp.digest + fp.salt
    (tmp_path / "paste").mkdir()
    (tmp_path / "paste" / "dump.txt").write_text(f"token {SECRET}\n")
    w = watch(tmp_path)
    [finding] = w.scan("paste")
    assert SECRET not in repr(finding) and SECRET not in repr(vars(w))


def test_git_history_keeps_a_secret_the_tree_no_longer_has(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "settings.py").write_text(f'SECRET = "{SECRET}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "oops")
    (repo / "settings.py").write_text('SECRET = "from-the-environment"\n')
    git(repo, "commit", "-qam", "remove it")
    [finding] = watch(tmp_path).scan("repo")
    assert finding.kind == "repo" and finding.where.startswith("repo@") and finding.where.endswith(":settings.py")


def test_untracked_file_in_the_working_tree_is_found(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "notes.txt").write_text(f"key={KEY} secret={SECRET}\n")
    [finding] = watch(tmp_path).scan("repo")
    assert finding.where == "repo/notes.txt:1"


@settings(max_examples=60, deadline=None)
@given(before=st.text(alphabet=" =:\"'", max_size=4), after=st.text(alphabet=" ,;\"'&", max_size=4),
       prefix=st.text(alphabet="abc \n", max_size=20))
def test_secret_found_between_any_separators(before: str, after: str, prefix: str) -> None:
    text = f"{prefix}{before}{SECRET}{after}"
    found = list(find_in_text(text, [Fingerprint.of(KEY, SECRET)]))
    assert [k for k, _ in found] == [KEY]


def test_the_bots_log_is_redacted_so_the_watch_finds_nothing(tmp_path: Path) -> None:
    """The bot installs redaction for its life (python -m bot); the same line without it is found."""
    secret = "gameday-FAKE-redaction-test-secret-4242"
    (tmp_path / "logs").mkdir()
    raw, guarded = tmp_path / "logs" / "raw.log", tmp_path / "logs" / "bot.log"
    logger = logging.getLogger("gameday.test.leak")
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def log_to(path: Path) -> None:
        handler = logging.FileHandler(path)
        logger.addHandler(handler)
        logger.info("client configured secret=%s", secret)
        logger.removeHandler(handler)
        handler.close()

    log_to(raw)
    redaction.register_secret(secret)
    with redaction.install(env={}):
        log_to(guarded)
    assert "***" in guarded.read_text() and secret not in guarded.read_text()
    w = LeakWatch([Fingerprint.of(KEY, secret)], LeakPlaces([tmp_path / "logs"], [], []), root=tmp_path)
    assert [f.where for f in w.scan("log")] == ["logs/raw.log:1"]


def test_config_ships_a_log_sla_within_a_minute() -> None:
    config = load_leak_config()
    assert config.detection_sla_ms["log"] <= 60_000
    assert all(config.scan_interval_ms[k] < config.detection_sla_ms[k] for k in config.detection_sla_ms)


@pytest.mark.parametrize("body,message", [
    ("scan_interval_s: {log: 60, repo: 60, paste: 30}\ndetection_sla_s: {log: 60, repo: 300, paste: 120}\n"
     "places: {logs: [l], repos: [r], drops: [d]}\n", "detection_sla_s.log: 60 s cannot be met"),
    ("scan_interval_s: {log: 10, repo: 60}\ndetection_sla_s: {log: 60, repo: 300, paste: 120}\n"
     "places: {logs: [l], repos: [r], drops: [d]}\n", "scan_interval_s: expected one number"),
    ("scan_interval_s: {log: 10, repo: 60, paste: -1}\ndetection_sla_s: {log: 60, repo: 300, paste: 120}\n"
     "places: {logs: [l], repos: r, drops: [d]}\n", "places.repos: expected a list"),
])
def test_bad_config_is_refused_naming_the_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "leak_detection.yaml"
    path.write_text(body)
    with pytest.raises(LeakConfigError, match=message):
        load_leak_config(path)
