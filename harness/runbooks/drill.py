"""`gameday drill --runbook NAME --operator WHO`: a runbook drill on the local testnet.

The drill starts the real stack and bot (harness.net), injects the runbook's incident, lets the
automated steps run (for a credential leak: the leak watch detects it and responds), then asks the
operator for each human step in order - a person at the terminal (TerminalOperator) or a script
(--operator-script, ScriptedOperator) - and times each answer from the incident's start against
the step's window. A confirmed step emits `runbook.step_done{runbook, step, elapsed_ms, actor}`;
a skipped one does not, and fails its expectation.

The drill is a scenario (generated, validated by the scenario loader): one expectation per
runbook step, `runbook.step_done` within the step's window end. Its record is judged like any
scenario's and written as an evidence set (evidence.jsonl with the drill's answers, the run's
artifacts, a sealed manifest.json) with a post-incident timeline (timeline.md) beside it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import load_policy
from bot.core.events import Event
from harness.collect import PolicyBundle, RunContext
from harness.evidence import append_evidence, build_evidence, reserve_set, tree_state, utc_now, write_manifest
from harness.expect import RunRecord, judge
from harness.runbooks.actions import Incident, run_automated
from harness.runbooks.incidents import INCIDENTS
from harness.runbooks.model import Runbook, load_runbook, runbooks_dir
from harness.runbooks.operator import Operator, ScriptedOperator, TerminalOperator
from harness.scenario import Scenario, dict_lookup, load_scenario, resolve_all

RESPONSE_TIMEOUT_S = 120.0


def drill_scenario(runbook: Runbook, time_scale: float) -> Scenario:
    fault, params, covers = INCIDENTS[runbook.id]
    expects = "".join(
        f"  - event: runbook.step_done\n    match: {{runbook: {runbook.id}, step: {s.id}}}\n"
        f"    after: incident\n    within: {runbook.window(s).end_ms}ms\n" for s in runbook.steps)
    text = (f"scenario: drill-{runbook.id.replace('_', '-')}\ntitle: \"Runbook drill: {runbook.title}\"\n"
            f"covers: [{', '.join(covers)}]\ntags: [drill]\nmode: net\nprofile: futures\n"
            f"time_scale: {time_scale!r}\nseed: 1\nmarket: {{start_price: 60000}}\n"
            f"account: {{equity: 10000, strategy: off, position: {{side: long, qty_pct: 10}}}}\n"
            f"steps:\n  - id: incident\n    at: 0s\n    fault: {fault}\n    params: {params}\n"
            f"expect:\n{expects}")
    with tempfile.TemporaryDirectory(prefix="gameday-drill-") as tmp:
        path = Path(tmp) / f"drill-{runbook.id}.yaml"
        path.write_text(text, encoding="utf-8")
        return load_scenario(path)


def run_drill(runbook_id: str, operator: Operator, *, time_scale: float = 1.0, out: Path = Path("reports"),
              say: Any = print) -> tuple[str, Path]:
    """Run one drill; (verdict, evidence set directory)."""
    from harness.net.runner import NetRun

    loaded = load_policy("futures")
    tree_dict = loaded.policy.model_dump()
    runbook = load_runbook(runbooks_dir() / f"{runbook_id}.yaml", policy_tree=tree_dict)
    scenario = drill_scenario(runbook, time_scale)
    lookup = dict_lookup(tree_dict)
    tree = tree_state()
    set_dir = reserve_set(out, tree)
    context = RunContext(pytest_config=None, params=resolve_all(scenario, lookup),  # type: ignore[arg-type]
                         policy=PolicyBundle(lookup, loaded.digest, loaded), evidence_dir=set_dir,
                         time_scale=time_scale)
    started_at, t0 = utc_now(), time.monotonic()
    run = NetRun(scenario, context, time_scale, set_dir / "net" / scenario.id)
    run.run_dir.mkdir(parents=True)
    run._at_end = []
    answers: list[dict[str, Any]] = []
    drill_events: list[Event] = []
    try:
        say(f"drill {runbook.id}: starting the testnet and the bot ...")
        run.start()
        timing, _ = run._inject("incident", INCIDENTS[runbook.id][0], context.params.get("incident", {}))
        if timing.error:
            raise RuntimeError(f"the incident could not be injected: {timing.error}")
        say(f"drill {runbook.id}: incident injected ({INCIDENTS[runbook.id][0]}); automated steps running")
        incident = _automated(run, runbook, drill_events, timing.injected_ms)
        for note in incident.notes:
            say(f"  {note}")
        for step in runbook.steps:
            if step.automated:
                continue
            elapsed = _now_ms() - incident.started_ms
            answer = operator.ask(step, runbook.window(step), elapsed)
            done = _now_ms() - incident.started_ms
            if answer.answer == "confirm":
                drill_events.append(Event("runbook.step_done", _now_ms(), {
                    "runbook": runbook.id, "step": step.id, "elapsed_ms": done, "actor": step.actor}))
            answers.append({"step": step.id, "actor": step.actor, "operator": answer.operator,
                            "answer": answer.answer, "notes": answer.notes, "prompted_ms": elapsed,
                            "elapsed_ms": done, "window": str(runbook.window(step)),
                            "in_window": answer.answer == "confirm" and runbook.window(step).holds(done)})
            say(f"\n  {step.id}: {answer.answer} by {answer.operator} at {done} ms ({runbook.window(step)})")
        end_state = run._end_state()
        run.follower.read_now()
        events = sorted([*run._events(), *drill_events], key=lambda e: e.ts_ms)
        record = RunRecord(events=events, steps=[timing], bar_ms=scenario.bar_ms, time_scale=time_scale,
                           end_state=end_state, start_ms=timing.injected_ms or 0, end_ms=_now_ms(),
                           notes=[*incident.notes, *run.notes])
    finally:
        run.stop()
    judgement = judge(scenario, record)
    evidence = build_evidence(scenario, judgement, record, config_digest=loaded.digest, started_at=started_at,
                              duration_s=time.monotonic() - t0, tree=tree)
    evidence["drill"] = {"runbook": runbook.id, "operator": getattr(operator, "name", "?"),
                         "operator_kind": type(operator).__name__, "incident_ms": incident.started_ms,
                         "automated": incident.notes, "human": answers}
    append_evidence(set_dir, evidence)
    (set_dir / "timeline.md").write_text(timeline(runbook, evidence, record, incident.started_ms), encoding="utf-8")
    write_manifest(set_dir, tree, complete=True, exit_status=0 if judgement.verdict == "pass" else 1)
    return judgement.verdict, set_dir


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _automated(run: Any, runbook: Runbook, events: list[Event], injected_ms: int | None) -> Incident:
    if runbook.id == "credential_leak":
        watch = run.leak_watch
        if not watch.responded.wait(RESPONSE_TIMEOUT_S) or watch.incident is None:
            raise RuntimeError(f"the leak watch did not detect the leak within {RESPONSE_TIMEOUT_S} s")
        return watch.incident  # type: ignore[no-any-return]
    from harness.runbooks.net import NetSurface

    incident = Incident(runbook, injected_ms or _now_ms(), f"{runbook.id} drill", run.api_key)
    import asyncio

    asyncio.run(run_automated(NetSurface(run, events), incident))
    return incident


def timeline(runbook: Runbook, evidence: dict[str, Any], record: RunRecord, incident_ms: int) -> str:
    """The post-incident timeline (Markdown) from the drill's record."""
    drill = evidence["drill"]
    lines = [f"# Post-incident timeline: {runbook.title}", "",
             f"- drill of runbook `{runbook.id}` ({runbook.severity}), operator **{drill['operator']}** "
             f"({drill['operator_kind']}), time scale {evidence['time_scale']}",
             f"- incident start: {datetime.fromtimestamp(incident_ms / 1000, UTC).isoformat()}",
             f"- verdict: **{evidence['verdict']}**; evidence: evidence.jsonl (git {evidence['git_commit'][:12]})", "",
             "| t+ (s) | event | detail |", "|---:|---|---|"]
    shown = ("credential.", "runbook.step_done", "killswitch.", "account.flat", "exchange.", "trading.")
    for e in record.events:
        if e.name.startswith(shown) and e.ts_ms >= incident_ms - 60_000:
            detail = ", ".join(f"{k}={v}" for k, v in e.fields.items())
            lines.append(f"| {(e.ts_ms - incident_ms) / 1000:.1f} | {e.name} | {detail} |")
    lines += ["", "## Steps against their windows", "",
              "| step | actor | window (from detection) | done, after injection (s) | verdict |",
              "|---|---|---|---:|---|"]
    results = {r["text"]: r for r in evidence["expectations"]}
    for step in runbook.steps:
        hit = next((r for t, r in results.items() if f"step={step.id}" in t), None)
        observed = hit.get("observed_ms") if hit else None
        done = f"{observed / 1000:.1f}" if isinstance(observed, int | float) else "-"
        lines.append(f"| {step.id} | {step.actor} | {runbook.window(step)} | {done} | "
                     f"{hit['verdict'] if hit else '?'} |")
    if drill["human"]:
        lines += ["", "## Operator notes", ""]
        lines += [f"- `{a['step']}` ({a['actor']}, {a['operator']}): {a['answer']}"
                  + (f" - {a['notes']}" if a["notes"] else "") for a in drill["human"]]
    return "\n".join(lines) + "\n"


def cmd_runbook_drill(args: argparse.Namespace) -> int:
    operator: Operator
    if args.operator_script is not None:
        scripted = ScriptedOperator(args.operator, args.operator_script)
        book = load_runbook(runbooks_dir() / f"{args.runbook}.yaml")
        scripted.check_steps({s.id for s in book.steps if not s.automated}, args.operator_script)
        operator = scripted
    else:
        operator = TerminalOperator(args.operator)
    verdict, set_dir = run_drill(args.runbook, operator, time_scale=args.time_scale, out=Path(args.report))
    print(f"\ndrill {args.runbook}: {verdict.upper()}; evidence {set_dir}; timeline {set_dir / 'timeline.md'}")
    return 0 if verdict == "pass" else 1
