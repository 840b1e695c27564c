"""Credential faults: a leaked secret, a revoked key, a key with the wrong permissions.

- credential_leak: the bot's (fake) API secret is written where it must not be - a log line
  (`where: log`), a config file committed to a git repository (`repo`, real git) or a paste
  (`paste`) - under the scenario's work directory (net: the run directory), in the places
  config/leak_detection.yaml watches. Nothing else: detection and response are the leak watch's
  and the runbook's job.
- key_revoked: the exchange revokes the bot's API key (-2015 from then on).
- key_permissions: the key has exactly the permissions named in `flags` (every other one off), in
  both modes through the engine's own permission flags (net: the testnet admin API).
"""

from __future__ import annotations

import os
import subprocess  # nosec B404 - git with fixed arguments, never a shell
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.faults.contract import DrillFacts, FaultError, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.net.inject import now_ms
from harness.sim.constants import API_KEY

if TYPE_CHECKING:
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


LEAK_FILES = {
    "log": ("logs/bot.log", "{ts} INFO exchange client configured key={key} secret={secret}\n"),
    "repo": ("repo/config/settings.py", 'BINANCE_API_KEY = "{key}"\nBINANCE_API_SECRET = "{secret}"\n'),
    "paste": ("paste/pastebin.txt", "debug dump {ts}: apiKey={key} secret={secret}\n"),
}
PERMISSION_FLAGS = {
    "read": "enable_reading", "trade": "enable_futures", "futures": "enable_futures",
    "withdraw": "enable_withdrawals", "internal_transfer": "enable_internal_transfer",
    "universal_transfer": "permits_universal_transfer", "spot": "enable_spot_and_margin_trading",
    "margin": "enable_margin", "ip_restrict": "ip_restrict",
}


def write_leak(workdir: Path, where: str, ts: int, key: str, secret: str) -> str:
    """Write the secret into the `where` place under workdir (committing it for `repo`, dated `ts`
    so that a sim run's commit id, which the leak's evidence names, is the same on every run)."""
    name, template = LEAK_FILES[where]
    path = workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(template.format(ts=ts, key=key, secret=secret))
    if where == "repo":
        repo = workdir / "repo"
        date = f"@{ts // 1000} +0000"
        env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=gameday", "-c", "user.email=gameday@invalid",
                                                   "commit", "-q", "-m", "settings"]):
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False, env=env)  # nosec B603, B607 - git by name with a fixed argv, no shell
            if done.returncode != 0:
                raise FaultError(f"credential_leak: git {' '.join(args)} failed: {done.stderr.decode()[:200]}")
    return name


def permissions_for(fault: str, flags: list[Any]) -> dict[str, bool]:
    """The engine's permission flags for a key that has exactly `flags`."""
    names = [str(f) for f in flags]
    unknown = [f for f in names if f not in PERMISSION_FLAGS]
    if unknown:
        raise FaultError(f"{fault}: unknown flag(s) {unknown}; allowed: {sorted(PERMISSION_FLAGS)}")
    wanted = {PERMISSION_FLAGS[f] for f in names}
    return {attr: attr in wanted for attr in set(PERMISSION_FLAGS.values())}


async def credential_leak(world: SimWorld, step: ActiveStep) -> None:
    name = write_leak(world.workdir, step.params["where"], world.now, world.api_key, world.api_secret)
    world.notes.append(f"{step.id}: leaked the bot's fake secret into {name}")


def credential_leak_net(run: NetRun, p: dict[str, Any]) -> Injected:
    at = now_ms()
    name = write_leak(run.run_dir, p["where"], at, run.api_key, run.secret)
    return Injected(at, notes=[f"leaked the bot's secret into {name}"])


async def key_revoked(world: SimWorld, step: ActiveStep) -> None:
    world.xe.revoke_key(API_KEY)


def key_revoked_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("keys/revoke", {"api_key": run.api_key})
    return Injected(now_ms())


async def key_permissions(world: SimWorld, step: ActiveStep) -> None:
    world.xe.set_permissions(API_KEY, permissions_for("key_permissions", step.params["flags"]))


def key_permissions_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("keys/permissions", {"api_key": run.api_key,
                                         "permissions": permissions_for("key_permissions", p["flags"])})
    return Injected(now_ms())


KEYS = "D1.api_restrictions"
KINDS = (
    kind("credential_leak", "credentials", "an API secret shows up where it must not", sim=credential_leak,
         net=credential_leak_net, where=P("enum", choices=("log", "repo", "paste")),
         drill=DrillFacts("D3.credential_leak")),
    kind("key_revoked", "credentials", "the exchange revokes the API key", sim=key_revoked, net=key_revoked_net,
         drill=DrillFacts(KEYS, blinds_bars=None, terminal=True)),
    kind("key_permissions", "credentials", "the API key has exactly these permissions", sim=key_permissions,
         net=key_permissions_net, flags=P("flags", doc="permission names, e.g. withdraw, trade"),
         drill=DrillFacts(KEYS, samples={"flags": ("read", "trade", "withdraw", "ip_restrict", "internal_transfer")},
                          blinds_bars=None, terminal=True)),
)
