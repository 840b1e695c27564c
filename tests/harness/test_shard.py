"""`--shard I/N`: a deterministic partition of the collected items (harness/shard.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.shard import in_shard, parse_shard


@given(st.lists(st.text(min_size=1, max_size=8)), st.integers(1, 6))
def test_every_item_lands_in_exactly_one_shard_and_sizes_differ_by_at_most_one(ids, count):
    kept = [in_shard(ids, i, count) for i in range(1, count + 1)]
    assert all(sum(k[j] for k in kept) == 1 for j in range(len(ids)))
    sizes = [sum(k) for k in kept]
    assert max(sizes) - min(sizes) <= 1


@given(st.lists(st.text(min_size=1, max_size=8), unique=True), st.integers(1, 4), st.randoms())
def test_the_partition_does_not_depend_on_collection_order(ids, count, rnd):
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    for index in range(1, count + 1):
        a = {i for i, k in zip(ids, in_shard(ids, index, count), strict=True) if k}
        b = {i for i, k in zip(shuffled, in_shard(shuffled, index, count), strict=True) if k}
        assert a == b


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_a_usage_error_with_the_fix(text):
    with pytest.raises(pytest.UsageError, match=r"expected I/N with 1 <= I <= N, e\.g\. --shard 1/4"):
        parse_shard(text)


def test_shards_of_a_session_run_disjoint_items_that_cover_it(pytester):
    pytester.makepyfile(test_many="".join(f"def test_{i}():\n    pass\n" for i in range(7)))
    ran = []
    for index in (1, 2, 3):
        result = pytester.runpytest("-p", "no:randomly", "--shard", f"{index}/3", "-q", "-rA")
        ran.append({line.split("::")[1] for line in result.stdout.lines if line.startswith("PASSED")})
    assert [len(r) for r in ran] == [3, 2, 2]
    assert set().union(*ran) == {f"test_{i}" for i in range(7)} and sum(map(len, ran)) == 7


def test_gameday_run_passes_workers_and_shard_to_pytest():
    from harness.cli import build_parser, pytest_argv

    args = build_parser().parse_args(["run", "-m", "gate", "-n", "auto", "--shard", "2/3", "scenarios"])
    argv = pytest_argv(args)
    assert argv[argv.index("-n") + 1] == "auto" and argv[argv.index("--shard") + 1] == "2/3"
