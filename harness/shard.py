"""`--shard I/N`: run the I-th of N deterministic parts of the collected items (a CI matrix).

Items are ordered by node id (so the partition does not depend on collection order or on
pytest-randomly's shuffle) and dealt round-robin: every item lands in exactly one shard, and the
shards of one commit differ in size by at most one. Under pytest-xdist every worker collects and
applies the same partition, so `--shard 1/2 -n auto` works too.
"""

from __future__ import annotations

import re

import pytest

_SHARD_RE = re.compile(r"(\d+)/(\d+)")


def parse_shard(text: str) -> tuple[int, int]:
    """"2/4" -> (2, 4); a clear error naming the fix otherwise."""
    match = _SHARD_RE.fullmatch(text.strip())
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise pytest.UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 1/4")
    return int(match[1]), int(match[2])


def add_options(parser: pytest.Parser) -> None:
    parser.getgroup("gameday").addoption(
        "--shard", metavar="I/N", default=None,
        help="run only the I-th of N deterministic parts of the collected items (node ids sorted, dealt "
             "round-robin); merge the shards' evidence sets with `gameday merge`")


def in_shard(node_ids: list[str], index: int, count: int) -> list[bool]:
    """For each node id (in collection order): whether shard `index` of `count` runs it."""
    order = sorted(range(len(node_ids)), key=lambda i: node_ids[i])
    keep = [False] * len(node_ids)
    for position, i in enumerate(order):
        keep[i] = position % count == index - 1
    return keep


@pytest.hookimpl(trylast=True)  # after -k/-m deselection and any reordering
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    raw = config.getoption("shard", None)
    if not raw:
        return
    index, count = parse_shard(raw)
    keep = in_shard([item.nodeid for item in items], index, count)
    config.hook.pytest_deselected(items=[item for item, k in zip(items, keep, strict=True) if not k])
    items[:] = [item for item, k in zip(items, keep, strict=True) if k]
