"""The harness's own results as an OpenMetrics text file beside the evidence (`metrics.prom`).

From the evidence records of a run (evidence.jsonl): one verdict series per scenario, its
duration, and per expectation with an SLA the observed reaction time, the SLA and whether it was
met; plus totals by verdict and when the run was written. Only gauges, so the same text is valid
Prometheus exposition too: ready for node-exporter's textfile collector (point
--collector.textfile.directory at a copy) or `curl --data-binary @metrics.prom` to a Pushgateway.
Written atomically (temp file + rename), as the textfile collector asks.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.openmetrics.exposition import generate_latest

from harness.evidence import read_evidence

METRICS_FILE = "metrics.prom"
VERDICTS = ("pass", "fail", "error")


def render(records: Iterable[Mapping[str, Any]], *, now_s: float | None = None) -> bytes:
    """OpenMetrics text of these evidence records."""
    registry = CollectorRegistry()
    labels = ["scenario", "mode", "profile"]
    verdict = Gauge("gameday_scenario_verdict", "1 for the scenario's verdict (pass, fail, error)",
                    [*labels, "verdict"], registry=registry)
    passed = Gauge("gameday_scenario_passed", "1 if the scenario passed, else 0", labels, registry=registry)
    duration = Gauge("gameday_scenario_duration_seconds", "Wall time of the scenario run", labels,
                     registry=registry)
    scale = Gauge("gameday_scenario_time_scale", "Time scale of the run (net mode; 1 in sim)", labels,
                  registry=registry)
    exp_labels = [*labels, "expectation"]
    observed = Gauge("gameday_expectation_observed_seconds", "Reaction time: from the fault to the expected event",
                     exp_labels, registry=registry)
    sla = Gauge("gameday_expectation_sla_seconds", "The SLA the reaction was judged against", exp_labels,
                registry=registry)
    met = Gauge("gameday_expectation_met", "1 if the expectation held", exp_labels, registry=registry)
    totals = Gauge("gameday_scenarios", "Scenarios of the run by verdict", ["verdict"], registry=registry)
    written = Gauge("gameday_run_timestamp_seconds", "When this file was written (unix time)", registry=registry)
    counts: Counter[str] = Counter()
    for record in records:
        key = [str(record.get("scenario")), str(record.get("mode")), str(record.get("profile"))]
        result = str(record.get("verdict"))
        counts[result] += 1
        for v in sorted({*VERDICTS, result}):
            verdict.labels(*key, v).set(1 if v == result else 0)
        passed.labels(*key).set(1 if result == "pass" else 0)
        duration.labels(*key).set(float(record.get("duration_s") or 0.0))
        scale.labels(*key).set(float(record.get("time_scale") or 1.0))
        for exp in record.get("expectations") or []:
            text = str(exp.get("text"))
            met.labels(*key, text).set(1 if exp.get("verdict") == "pass" else 0)
            if exp.get("sla_ms") is not None:
                sla.labels(*key, text).set(exp["sla_ms"] / 1000)
            if exp.get("observed_ms") is not None and exp.get("sla_ms") is not None:
                observed.labels(*key, text).set(exp["observed_ms"] / 1000)
    for v in VERDICTS:
        totals.labels(v).set(counts.get(v, 0))
    written.set(time.time() if now_s is None else now_s)
    return generate_latest(registry)


def write_metrics_file(directory: str | Path) -> Path:
    """Write `directory/metrics.prom` from `directory/evidence.jsonl`; returns its path."""
    directory = Path(directory)
    path = directory / METRICS_FILE
    tmp = path.with_name(f".{METRICS_FILE}.{os.getpid()}.tmp")
    tmp.write_bytes(render(read_evidence(directory)))
    os.replace(tmp, path)
    return path
