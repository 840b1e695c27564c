"""What an operator reads from the breakers (verdict texts, remaining cooldown) and the shared
helpers the breakers judge with: each pinned, so a change to them is noticed (docs/mutation.md)."""

from __future__ import annotations

import pytest

from bot.core.breakers.base import (
    BreakerVerdict,
    FeedLag,
    InferenceTiming,
    OrderLatency,
    at_or_above,
    fmt_ms,
    input_problem,
)


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0m00s"), (-5_000, "0m00s"), (59_999, "0m59s"), (3_599_000, "59m59s"), (3_600_000, "1h00m00s"),
    (3_661_000, "1h01m01s"),
])
def test_remaining_time_reads_in_hours_minutes_seconds(ms: int, text: str) -> None:
    assert fmt_ms(ms) == text


def test_a_verdict_names_a_size_reduction_only_when_there_is_one() -> None:
    full = BreakerVerdict("consecutive_losses", "streak", "warning", 2.0, 2.0, size_factor=1.0)
    halved = BreakerVerdict("consecutive_losses", "streak", "warning", 3.0, 3.0, size_factor=0.5)
    assert "size" not in full.describe()
    assert halved.describe().endswith("(size x0.5)")


def test_the_rounding_tolerance_is_relative_to_the_threshold() -> None:
    assert at_or_above(1e12 - 500, 1e12)  # within 1e-9 of a large threshold
    assert not at_or_above(1e12 - 5_000, 1e12)
    assert at_or_above(3.0 - 1e-12, 3.0)
    assert not at_or_above(3.0 - 1e-6, 3.0)


@pytest.mark.parametrize("threshold", [3.0, 1_000.0, 0.5])
def test_a_value_exactly_at_the_tolerance_edge_trips(threshold: float) -> None:
    # the tolerance is inclusive: the edge itself counts as "at the threshold"
    edge = threshold - 1e-9 * max(1.0, threshold)
    assert at_or_above(edge, threshold)


@pytest.mark.parametrize("sample", [FeedLag(0, 0.0), FeedLag(0, 0.5), InferenceTiming(0, 0.0), InferenceTiming(0, 0.5),
                                    OrderLatency(0, "fill", 0.0), OrderLatency(0, "placement", 0.5)])
def test_a_zero_or_sub_millisecond_measurement_is_valid(sample: object) -> None:
    assert input_problem(sample) is None


@pytest.mark.parametrize("sample", [FeedLag(0, -0.5), InferenceTiming(0, -0.5), OrderLatency(0, "fill", -0.5)])
def test_a_negative_measurement_is_rejected(sample: object) -> None:
    assert input_problem(sample) is not None
