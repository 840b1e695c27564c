"""The doors answer in one line: bad input at a command line is named with its fix, never a traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.io.state import StateStoreError, open_store
from harness.scenario import ScenarioError, load_scenario, signal_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cli(*argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    out = (done.stdout + done.stderr).strip()
    assert "Traceback" not in out, out
    return out.splitlines()[-1]


def test_testnet_port_out_of_range_is_a_usage_error():
    done = cli("-m", "harness.testnet", "--port", "99999")
    assert done.returncode == 2
    assert one_line(done).endswith("error: argument --port: expected a TCP port 0-65535 (0 = any free port), "
                                   "got '99999'")


def test_testnet_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("-m", "harness.testnet", "--port", str(port))
    assert done.returncode == 2
    assert one_line(done) == (f"error: cannot listen on 127.0.0.1:{port}: Address already in use (pick another "
                              "--port, or 0 for any free port)")


def test_a_binary_file_as_breakers_is_one_line(tmp_path):
    binary = tmp_path / "breakers.toml"
    binary.write_bytes(b"\x00\x01\xff\xfe\x80 not text")
    done = cli("-m", "bot", "config", "check", "--breakers", str(binary))
    assert done.returncode == 2
    assert one_line(done) == ("breakers.toml: (file): not UTF-8 text (got byte 0xff at offset 2; expected a TOML "
                              "text file)")


def test_a_string_where_a_number_belongs_is_an_error_not_a_number(tmp_path):
    toml = (ROOT / "config" / "circuit_breakers.toml").read_text()
    assert "\nthreshold_pct = 3.0\n" in toml
    bad = tmp_path / "circuit_breakers.toml"
    bad.write_text(toml.replace("\nthreshold_pct = 3.0\n", '\nthreshold_pct = "3"\n', 1))
    done = cli("-m", "bot", "config", "check", "--breakers", str(bad))
    assert done.returncode == 2
    assert one_line(done) == ("circuit_breakers.toml: circuit_breakers.drawdown.threshold_pct: wrong type (got '3'; "
                              "expected a number > 0)")
    flag = tmp_path / "flag.toml"
    flag.write_text(toml.replace("enabled = true", 'enabled = "yes"', 1))
    done = cli("-m", "bot", "config", "check", "--breakers", str(flag))
    assert done.returncode == 2 and "(got 'yes'; expected" in one_line(done)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/abc", "redis://user:pw@127.0.0.1:6379/-1",
                                 "redis://127.0.0.1:6379/0/"])
def test_a_redis_url_with_a_non_numeric_database_is_refused(url):
    with pytest.raises(StateStoreError) as err:
        open_store(url)
    assert str(err.value).startswith("redis: bad URL: database ")
    assert "is not a number (redis://HOST:PORT/N with N = 0, 1, ...)" in str(err.value)
    assert "pw" not in str(err.value)


def test_the_pytest_console_script_collects_the_tests():
    """`pytest tests`, not only `python -m pytest`: tests import tests.* helpers."""
    done = subprocess.run([str(BIN / "pytest"), "--collect-only", "-q", "-p", "no:randomly",
                           "tests/runtime/test_trader.py", "tests/runtime/test_control.py"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "No module named 'tests'" not in done.stdout


def test_gameday_config_dir_is_honoured_by_the_bot(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "profiles" / "pets.yaml").rename(config / "profiles" / "staging.yaml")
    done = cli("-m", "bot", "config", "check", "--profile", "staging", env={"GAMEDAY_CONFIG_DIR": str(config)})
    assert done.returncode == 0, done.stderr
    done = cli("-m", "bot", "config", "check", "--profile", "staging")
    assert done.returncode == 2 and "unknown profile (got 'staging'" in one_line(done)


@pytest.mark.parametrize(("spelling", "name"), [("KILL", "SIGKILL"), ("SIGKILL", "SIGKILL"), ("kill", "SIGKILL"),
                                                ("sigkill", "SIGKILL"), (9, "SIGKILL"), ("9", "SIGKILL"),
                                                ("TERM", "SIGTERM"), (15, "SIGTERM"), ("int", "SIGINT"),
                                                ("NOPE", None), (99, None), (True, None)])
def test_signal_names_as_kill_accepts_them(spelling, name):
    assert signal_name(spelling) == name


def test_bot_crash_takes_any_kill_spelling_and_names_the_allowed_ones(write_scenario):
    text = "scenario: c\nmode: net\nprofile: futures\nsteps:\n  - {{id: c, at: 1s, fault: bot_crash, params: " \
           "{{signal: {}}}}}\n"
    for spelling in ("KILL", "9", "sigterm"):
        s = load_scenario(write_scenario("c.yaml", text.format(spelling)), checklist_ids=None)
        assert s.steps[0].params["signal"] in ("SIGKILL", "SIGTERM")
    with pytest.raises(ScenarioError) as err:
        load_scenario(write_scenario("c.yaml", text.format("USR1")), checklist_ids=None)
    assert str(err.value).endswith("c.yaml:5: steps[0].params.signal: SIGUSR1 is not a crash this fault makes (got "
                                   "'USR1'; allowed: a signal as kill(1) names it (KILL, SIGKILL, kill, 9): "
                                   "SIGKILL|SIGTERM|SIGINT)")
