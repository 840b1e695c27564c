"""The README's "The bot against the local testnet" section, run as written against a live testnet:
the documented command lines (only the ports changed to free ones), then the kill switch through
the running bot and, with the bot dead, the very same kill-switch line acting on the exchange itself."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bot.io.exchange import OrderRequest
from bot.io.exchange_ccxt import SyncCcxtExchange

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## The bot against the local testnet"
KEY, SECRET = "demo-key", "demo-secret-not-real"


def readme_commands() -> list[str]:
    """Every command line of the section's bash blocks (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        pending = ""
        for raw in block.splitlines():
            pending += raw.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if pending.strip():
                lines.append(pending.strip())
            pending = ""
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


class Shell:
    """Runs README lines with bash in a scratch directory holding a `.venv` link to the project's."""

    def __init__(self, cwd: Path, ports: dict[str, str]) -> None:
        self.cwd = cwd
        self.ports = ports
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")}
        self.background: list[subprocess.Popen[bytes]] = []

    def _line(self, line: str) -> str:
        for documented, free in self.ports.items():
            line = line.replace(documented, free)
        return line

    def run(self, line: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        line = self._line(line)
        if line.startswith("export "):
            for word in shlex.split(line[len("export "):], comments=True):
                name, _, value = word.partition("=")
                self.env[name] = value
            return subprocess.CompletedProcess(line, 0, "", "")
        if line.endswith("&"):
            log = open(self.cwd / f"bg{len(self.background)}.log", "wb")  # noqa: SIM115 - owned by the child
            self.background.append(subprocess.Popen(["bash", "-c", line[:-1]], cwd=self.cwd, env=self.env,
                                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
            return subprocess.CompletedProcess(line, 0, "", "")
        return subprocess.run(["bash", "-c", line], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def close(self) -> None:
        for proc in self.background:
            try:
                self.stop(proc)
            except ProcessLookupError:
                pass


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    sh = Shell(tmp_path, {"8900": str(_free_port()), "8901": str(_free_port())})
    try:
        yield sh
    finally:
        sh.close()


def test_the_readme_walkthrough_runs_as_written(shell: Shell) -> None:
    lines = readme_commands()
    [testnet] = [i for i, line in enumerate(lines) if " testnet --port 8900" in line]
    [run] = [i for i, line in enumerate(lines) if "-m bot run " in line]
    kills = [i for i, line in enumerate(lines) if "-m bot killswitch --mode immediate" in line]
    assert len(kills) == 1 and testnet < run < kills[0]
    rest_url = f"http://127.0.0.1:{shell.ports['8900']}"
    control_url = f"http://127.0.0.1:{shell.ports['8901']}"

    # the setup, line by line; a position exists before the bot starts, so the bot adopts it
    for i, line in enumerate(lines[:run]):
        done = shell.run(line)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stderr}"
        if i == testnet:
            _wait(rest_url + "/fapi/v1/ping")
    exchange = SyncCcxtExchange(KEY, SECRET, rest_url=rest_url)
    exchange.create_order(OrderRequest("BTCUSDT", "buy", 0.01, "market", "readme-1"))
    assert shell.run(lines[run]).returncode == 0
    _wait(control_url + "/health")
    for line in lines[run + 1:kills[0]]:  # e.g. the curl of /status
        done = shell.run(line)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stderr}"

    # the kill switch through the running bot, then the lines after it
    done = shell.run(lines[kills[0]])
    assert done.returncode == 0, done.stderr
    assert "through the running bot" in done.stdout
    deadline = time.monotonic() + 15
    while exchange.fetch_all_positions() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exchange.fetch_all_positions() == []
    for line in lines[kills[0] + 1:]:
        done = shell.run(line)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stdout}\n{done.stderr}"

    # the bot dies; a position is open again; the same line acts on the exchange by itself
    shell.stop(shell.background[1])
    exchange.create_order(OrderRequest("BTCUSDT", "sell", 0.02, "market", "readme-2"))
    done = shell.run(lines[kills[0]])
    assert done.returncode == 0, done.stderr
    assert "acting directly" in done.stderr and "account flat" in done.stdout
    assert exchange.fetch_all_positions() == [] and exchange.fetch_open_orders() == []
    exchange.close()
