"""`gameday drill --random N -n auto` (issue 10 item 4): one process per core, the same schedules and
results as one process, one drill record and a manifest that matches it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import cli
from harness.evidence import verify_set

VARYING = ("wall_s", "started_at")


def _drill(out: Path, jobs: str) -> dict[str, object]:
    code = cli.main(["drill", "--random", "6", "--seed", "9", "--profile", "futures", "--bars", "60",
                     "--no-shrink", "--out", str(out), "-n", jobs])
    assert code in (0, 1)
    assert verify_set(out) == []  # the record is sealed by its manifest
    record = json.loads((out / "drill.json").read_text())
    return {k: v for k, v in record.items() if k not in VARYING}


def test_n_auto_gives_the_results_of_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _drill(tmp_path / "auto", "auto") == _drill(tmp_path / "one", "1")


def test_n_auto_is_one_process_per_core() -> None:
    from harness.drill_args import _jobs

    assert _jobs("auto") == max(1, min(os.cpu_count() or 1, 8))
    assert _jobs("3") == 3


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_job_count_that_is_no_count_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["drill", "--random", "2", "--seed", "1", "-n", bad])
    assert exc.value.code == 2
    assert "-n/--jobs" in capsys.readouterr().err
