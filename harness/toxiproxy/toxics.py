"""Toxics: their types and attributes, their per-link state, and what each type does to a chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.toxiproxy.errors import bad_body

if TYPE_CHECKING:
    from harness.toxiproxy.link import Link

STREAMS = ("upstream", "downstream")
TOXIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
    "noop": (),
}


def parse_toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_body(f"toxicity must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise bad_body(f"toxicity must be between 0 and 1, got {value!r}")
    return float(value)


def parse_attributes(toxic_type: str, raw: Any, base: dict[str, int]) -> dict[str, int]:
    """Known keys must be non-negative integers; unknown keys are ignored (as the real server does)."""
    if raw is None:
        return dict(base)
    if not isinstance(raw, dict):
        raise bad_body(f"attributes must be an object, got {raw!r}")
    merged = dict(base)
    for key in TOXIC_ATTRIBUTES[toxic_type]:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_body(f"attribute {key!r} of a {toxic_type} toxic must be an integer, got {value!r}")
        if value < 0:
            raise bad_body(f"attribute {key!r} of a {toxic_type} toxic must be >= 0, got {value}")
        merged[key] = value
    return merged


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


class CloseLink(Exception):
    """Raised inside a link's pump to end the link (reset=True: end the connection with a TCP RST)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass
class Stub:
    """One toxic attached to one link: the roll of its toxicity and its per-link state."""

    toxic: Toxic
    active: bool
    attached_at: float
    detached: bool = False
    sent: int = 0  # limit_data
    free_at: float = 0.0  # bandwidth


async def apply_toxic(link: Link, stub: Stub, data: bytes, ts: float) -> AsyncIterator[tuple[bytes, float]]:
    """Push one chunk through one active toxic, yielding what it lets out."""
    toxic = stub.toxic
    kind = toxic.type
    attrs = toxic.attributes
    rng = link.conn.proxy.server.rng
    if kind == "latency":
        jitter = attrs.get("jitter", 0)
        offset_ms = rng.uniform(-jitter, jitter) if jitter > 0 else 0.0
        while not stub.detached:
            release = ts + max(0.0, attrs.get("latency", 0) + offset_ms) / 1000.0
            if await link.sleep_until(release):
                ts = max(ts, release)
                break
        yield data, ts
    elif kind == "bandwidth":
        while data:
            if stub.detached:
                yield data, ts
                return
            rate = attrs.get("rate", 0)  # KB/s == bytes per ms
            if rate <= 0:
                await link.sleep_until(None)  # stall until the toxic changes
                continue
            piece = data[: rate * 100]  # at most 100 ms worth of bytes per write
            release = max(link.loop.time(), stub.free_at) + len(piece) / (rate * 1000.0)
            if await link.sleep_until(release):
                stub.free_at = release
                data = data[len(piece) :]
                yield piece, ts
    elif kind == "slicer":
        pos = 0
        while pos < len(data):
            average = attrs.get("average_size", 0)
            if stub.detached or average <= 0:
                yield data[pos:], ts
                return
            variation = min(attrs.get("size_variation", 0), max(average - 1, 0))
            size = max(1, average + (rng.randint(-variation, variation) if variation else 0))
            yield data[pos : pos + size], ts
            pos += size
            if pos < len(data):
                await link.sleep_until(link.loop.time() + attrs.get("delay", 0) / 1_000_000.0)
    elif kind == "limit_data":
        allowed = attrs.get("bytes", 0)
        remaining = max(0, allowed - stub.sent)
        piece = data[:remaining]
        if piece:
            stub.sent += len(piece)
            yield piece, ts
        if stub.sent >= allowed and not stub.detached:
            raise CloseLink()
    elif kind == "timeout":
        return  # drop the data; the link's close_at closes it after the timeout
    elif kind == "reset_peer":
        started = link.loop.time()
        while not stub.detached:
            if await link.sleep_until(started + attrs.get("timeout", 0) / 1000.0):
                raise CloseLink(reset=True)
        yield data, ts
    else:  # noop
        yield data, ts
