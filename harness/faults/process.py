"""Process faults. In sim mode: `restart` - the bot process ends and a new one starts from the
same state store, emergency marker, audit log and exchange account, as after a deploy or a crash
that lost nothing on disk. (bot_crash and redis_outage need real processes: net mode only.)"""

from __future__ import annotations

from typing import Any

from harness.runner import ActiveStep, SimWorld


async def restart(world: SimWorld, step: ActiveStep) -> None:
    await world.stop_bot()
    if await world.start_bot():
        world.publish_book()


SIM: dict[str, Any] = {"restart": restart}
