"""Credential faults: a leaked secret, a revoked key, a key with the wrong permissions.

- credential_leak: the bot's (fake) API secret is written where it must not be - a log line
  (`where: log`), a config file committed to a git repository (`repo`, real git) or a paste
  (`paste`) - under the scenario's work directory, in the places config/leak_detection.yaml
  watches. Nothing else: detection and response are the leak watch's and the runbook's job.
- key_revoked: the exchange revokes the bot's API key (-2015 from then on).
- key_permissions: the key has exactly the permissions named in `flags`.
"""

from __future__ import annotations

import subprocess  # nosec B404 - git with fixed arguments, never a shell
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.faults.contract import FaultError
from harness.sim.constants import API_KEY, START_MS

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

if TYPE_CHECKING:
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld



def write_leak(workdir: Path, where: str, ts: int, key: str, secret: str) -> str:
    """Write the secret into the `where` place under workdir (committing it for `repo`); the file."""
    name, template = LEAK_FILES[where]
    path = workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(template.format(ts=ts, key=key, secret=secret))
    if where == "repo":
        repo = workdir / "repo"
        for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=gameday", "-c", "user.email=gameday@invalid",
                                                   "commit", "-q", "-m", "settings"]):
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)  # nosec B603, B607 - git by name with a fixed argv, no shell
            if done.returncode != 0:
                raise FaultError(f"credential_leak: git {' '.join(args)} failed: {done.stderr.decode()[:200]}")
    return name


async def credential_leak(world: SimWorld, step: ActiveStep) -> None:
    name = write_leak(world.workdir, step.params["where"], world.now - START_MS, world.api_key, world.api_secret)
    world.notes.append(f"{step.id}: leaked the bot's fake secret into {name}")


async def key_revoked(world: SimWorld, step: ActiveStep) -> None:
    world.xe.revoke_key(API_KEY)


async def key_permissions(world: SimWorld, step: ActiveStep) -> None:
    flags = [str(f) for f in step.params["flags"]]
    unknown = [f for f in flags if f not in PERMISSION_FLAGS]
    if unknown:
        raise FaultError(f"key_permissions: unknown flag(s) {unknown}; allowed: {sorted(PERMISSION_FLAGS)}")
    wanted = {PERMISSION_FLAGS[f] for f in flags}
    world.xe.set_permissions(API_KEY, {attr: attr in wanted for attr in set(PERMISSION_FLAGS.values())})


SIM: dict[str, Any] = {"credential_leak": credential_leak, "key_revoked": key_revoked,
                       "key_permissions": key_permissions}
