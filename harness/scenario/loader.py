"""`load_scenario`: one file to a validated `Scenario`, every problem reported at once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness.faults import FAULTS
from harness.faults.contract import MODES
from harness.scenario.errors import LList, LMap, Problem, ScenarioError, parse_yaml
from harness.scenario.expectations import _ExpectationReader
from harness.scenario.files import HARNESS_CONFIG, covers_ok, known_profiles, load_checklist_ids, max_bars, project_root
from harness.scenario.model import (
    _SCENARIO_ID_RE,
    _STEP_ID_RE,
    GENERATORS,
    KNOWN_TAGS,
    Account,
    Market,
    Position,
    Scenario,
    Step,
)
from harness.scenario.overlay import PolicySetting, read_overlay
from harness.scenario.params import _ParamReader
from harness.scenario.reader import ACCOUNT_KEYS, MARKET_KEYS, POSITION_KEYS, STEP_KEYS, TOP_KEYS, _allowed, _near

_DEFAULT: Any = object()


def load_scenario(
    path: str | Path,
    *,
    profiles: Iterable[str] | Callable[[], Iterable[str]] | None = _DEFAULT,
    checklist_ids: Iterable[str] | Callable[[], Iterable[str] | None] | None = _DEFAULT,
    config_dir: Path | None = None,
    display_path: str | None = None,
) -> Scenario:
    """Load and validate one scenario file; raise ScenarioError listing every problem.

    profiles: the known profile names (default: stems of `<config>/profiles/*.yaml`);
    None skips the check. checklist_ids: the checklist ids `covers:` must cite (default: ids
    of `<config>/checklist.yaml`; a missing one is an error); `covers:` is then required and not
    empty. None skips both (unit tests of the loader and runners). `config_dir` defaults to
    $GAMEDAY_CONFIG_DIR, else the project's config/.
    `display_path` is how the file is named in messages (default: `path` as given).
    """
    path = Path(path)
    file = display_path or str(path)
    if profiles is _DEFAULT:
        profiles = functools.partial(known_profiles, config_dir)
    if checklist_ids is _DEFAULT:
        checklist_ids = functools.partial(load_checklist_ids, config_dir)
    from harness.checklist import ChecklistError

    profile_set = _materialise(profiles)
    try:
        checklist_set = _materialise(checklist_ids)
    except ChecklistError as exc:
        raise ScenarioError([Problem(file, 1, "covers", f"cannot be checked: {line}")
                             for line in str(exc).splitlines()]) from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(file, 1, "", f"cannot read the file: {exc}")]) from None
    data = parse_yaml(text, file)
    if data is None:
        raise ScenarioError([Problem(file, 1, "", "empty file: a scenario needs at least scenario: ID, "
                                     "covers: [ITEMS] and profile: NAME (docs/scenarios.md); if this is not a "
                                     "scenario, delete it or move it out of the collected paths")])
    return _Loader(file, path, profile_set, checklist_set, max_bars(config_dir)).scenario(data)


def _materialise(source: Any) -> frozenset[str] | None:
    if source is None:
        return None
    if callable(source):
        source = source()
        if source is None:
            return None
    return frozenset(source)




class _Loader(_ParamReader, _ExpectationReader):
    """One file's sections, top to bottom."""

    # -- sections ------------------------------------------------------------------------
    def scenario(self, data: Any) -> Scenario:
        top = self.mapping(data, 1, "", TOP_KEYS)
        if top is None:
            raise ScenarioError(self.problems)
        sid = top.get("scenario")
        if "scenario" in top and (not isinstance(sid, str) or not _SCENARIO_ID_RE.match(sid)):
            self.err(top.value_lines["scenario"], "scenario", "invalid scenario id", sid,
                     "lowercase letters, digits and '-', starting with a letter or digit")
        title = self.text(top, "title", "", None) or (sid if isinstance(sid, str) else "")
        mode = self.choice(top, "mode", "", MODES, "sim")
        covers = self.covers(top)
        tags = []
        for tag, line in self.string_list(top, "tags", ""):
            if tag not in KNOWN_TAGS:
                self.err(line, "tags", "unknown tag", tag, _allowed(KNOWN_TAGS))
            tags.append(tag)
        profile = top.get("profile")
        if "profile" in top:
            if not isinstance(profile, str):
                self.err(top.value_lines["profile"], "profile", "expected a profile name", profile)
            elif self.profiles is not None and profile not in self.profiles:
                near = _near(profile, self.profiles)
                what = f"unknown profile, did you mean {near[0]!r}?" if near else "unknown profile"
                self.err(top.value_lines["profile"], "profile", what, profile,
                         _allowed(sorted(self.profiles)) + " (config/profiles/*.yaml)")
        seed = self.number(top, "seed", "", 0, integer=True)
        time_scale = self.number(top, "time_scale", "", 1.0, gt=0)
        duration = None
        if "duration" in top:
            duration = self.duration(top["duration"], top.value_lines["duration"], "duration",
                                     allow_zero=False)
        market = self.market(top)
        account = self.account(top)
        policy = self.policy(top, mode)
        steps = self.steps(top, mode, market)
        expect = self.expectations(top, steps, market, mode)
        final = self.final(top)
        self.check_timeline(mode, duration, market, steps, top)
        if self.problems:
            raise ScenarioError(sorted(self.problems, key=lambda p: p.line))
        return Scenario(
            id=str(sid), title=title, covers=tuple(covers), tags=tuple(tags), mode=mode,
            profile=str(profile), seed=seed, time_scale=time_scale, duration=duration, market=market,
            account=account, steps=tuple(steps), expect=tuple(expect), final=final,
            path=self.path, source=self.file, line=top.line, policy=policy)

    def policy(self, top: LMap, mode: str) -> tuple[PolicySetting, ...]:
        if "policy" not in top:
            return ()
        line = top.value_lines["policy"]
        if mode == "net":
            self.err(top.key_lines["policy"], "policy", "a policy overlay applies in sim mode only: a net bot is a "
                     "process reading its config directory", allowed="mode: sim, or a profile in config/profiles/")
            return ()
        return read_overlay(top["policy"], line, self.file, self.problems)

    def covers(self, top: LMap) -> list[str]:
        items = self.string_list(top, "covers", "")
        if "covers" not in top and self.checklist is not None:
            self.err(top.line, "(top level)", "missing required key 'covers': a scenario is evidence for "
                     "checklist items; name them", allowed="covers: [ids of config/checklist.yaml]")
        if isinstance(top.get("covers"), LList) and not top["covers"]:
            self.err(top.value_lines["covers"], "covers", "an empty list: a scenario is evidence for checklist "
                     "items; name them", [], "ids of config/checklist.yaml, e.g. C2.drawdown")
        if self.checklist is not None:
            for cid, line in items:
                if not covers_ok(cid, self.checklist):
                    near = _near(cid, self.checklist)
                    what = "not a checklist id nor a refinement of one"
                    if near:
                        what += f", did you mean {near[0]!r}?"
                    self.err(line, "covers", what, cid,
                             "an id of config/checklist.yaml or a refinement of one "
                             f"(e.g. {', '.join(near or sorted(self.checklist)[:5])})")
        return [c for c, _ in items]

    def market(self, top: LMap) -> Market:
        if "market" not in top:
            return Market()
        m = self.mapping(top["market"], top.value_lines["market"], "market", MARKET_KEYS)
        if m is None:
            return Market()
        generator = self.choice(m, "generator", "market", GENERATORS, "random_walk")
        bar = Market.bar
        if "bar" in m:
            bar = self.duration(m["bar"], m.value_lines["bar"], "market.bar", allow_zero=False,
                                time_only=True) or bar
        bars_default = Market.bars if generator == "random_walk" else None
        file = None
        if generator == "fixture":
            if "file" not in m:
                self.err(m.line, "market", "generator fixture needs 'file'",
                         allowed="a path relative to the scenario file or the project")
            else:
                file = self.fixture_file(m)
        elif "file" in m:
            self.err(m.key_lines["file"], "market.file", "only for generator fixture",
                     m["file"], "remove it, or set generator: fixture")
        bars = self.number(m, "bars", "market", bars_default, integer=True, ge=1)
        if bars is not None and bars > self.bars_limit:
            self.err(m.value_lines["bars"], "market.bars",
                     "too many bars for one run: minutes of CPU in sim, hours of real time in net "
                     f"(limit {self.bars_limit}, config/{HARNESS_CONFIG} scenario.max_bars)", bars,
                     f"<= {self.bars_limit}; shorten the market, or raise the limit")
            bars = self.bars_limit
        return Market(
            generator=generator,
            start_price=self.number(m, "start_price", "market", Market.start_price, gt=0),
            bars=bars,
            vol_bps=self.number(m, "vol_bps", "market", Market.vol_bps, ge=0),
            file=file, bar=bar)

    def fixture_file(self, m: LMap) -> Path | None:
        name = m["file"]
        if not isinstance(name, str) or not name:
            self.err(m.value_lines["file"], "market.file", "expected a file path", name)
            return None
        candidates = [self.path.parent / name, project_root() / name]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        self.err(m.value_lines["file"], "market.file", "file not found", name,
                 "a path relative to the scenario file or the project root")
        return None

    def account(self, top: LMap) -> Account:
        if "account" not in top:
            return Account()
        a = self.mapping(top["account"], top.value_lines["account"], "account", ACCOUNT_KEYS)
        if a is None:
            return Account()
        equity = self.number(a, "equity", "account", Account.equity, gt=0)
        position = None
        if "position" in a:
            p = self.mapping(a["position"], a.value_lines["position"], "account.position",
                             POSITION_KEYS)
            if p is not None:
                side = self.choice(p, "side", "account.position", ("long", "short"), "long")
                qty_pct = self.number(p, "qty_pct", "account.position", None, gt=0)
                notional = self.number(p, "notional", "account.position", None, gt=0)
                if ("qty_pct" in p) == ("notional" in p):
                    self.err(p.line, "account.position", "give exactly one of qty_pct, notional",
                             allowed="qty_pct (percent of equity) or notional (quote currency)")
                offset = self.number(p, "entry_offset_pct", "account.position", 0.0)
                position = Position(side, qty_pct, notional, offset)
        # YAML 1.1 reads a bare on/off as a boolean; accept both spellings.
        raw_strategy = a.get("strategy", True)
        strategy = raw_strategy if isinstance(raw_strategy, bool) else \
            self.choice(a, "strategy", "account", ("on", "off"), "on") == "on"
        return Account(equity, position, strategy)

    def steps(self, top: LMap, mode: str, market: Market) -> list[Step]:
        if "steps" not in top:
            return []
        raw = top["steps"]
        if not isinstance(raw, LList):
            self.err(top.value_lines["steps"], "steps", "expected a list of steps", raw)
            return []
        steps: list[Step] = []
        seen = self.step_lines
        for i, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True)):
            key = f"steps[{i}]"
            s = self.mapping(item, line, key, STEP_KEYS)
            if s is None:
                continue
            sid = s.get("id")
            if "id" in s:
                if not isinstance(sid, str) or not _STEP_ID_RE.match(sid):
                    self.err(s.value_lines["id"], f"{key}.id", "invalid step id", sid,
                             "lowercase letters, digits, '-' and '_'")
                    sid = None
                elif sid in seen:
                    self.err(s.value_lines["id"], f"{key}.id",
                             f"duplicate step id (first at line {seen[sid]})", sid)
                else:
                    seen[sid] = s.value_lines["id"]
            at = None
            if "at" in s:
                at = self.duration(s["at"], s.value_lines["at"], f"{key}.at")
            kind: Any = s.get("fault")
            spec = None
            if "fault" in s:
                kind_line = s.value_lines["fault"]
                if kind not in FAULTS:
                    near = _near(kind, FAULTS) if isinstance(kind, str) else []
                    what = f"unknown fault kind, did you mean {near[0]!r}?" if near else \
                        "unknown fault kind"
                    self.err(kind_line, f"{key}.fault", what, kind, _allowed(FAULTS))
                else:
                    spec = FAULTS[kind]
                    if mode not in spec.modes:
                        why = spec.not_in.get(mode)
                        self.err(kind_line, f"{key}.fault", f"fault {kind!r} is not available in "
                                 f"mode {mode} (it runs in: {', '.join(sorted(spec.modes))})"
                                 + (f": {why}" if why else ""), kind,
                                 f"in {mode}: " + _allowed(k for k, f in FAULTS.items()
                                                           if mode in f.modes))
            params: dict[str, Any] = {}
            param_lines: dict[str, int] = {}
            if spec is not None:
                params, param_lines = self.params(s, key, spec)
            elif "params" in s and not isinstance(s["params"], LMap):
                self.err(s.value_lines["params"], f"{key}.params", "expected a mapping", s["params"])
            if sid is not None and at is not None and spec is not None:
                steps.append(Step(sid, at, kind, params, line, param_lines, i, s.value_lines["at"]))
        return steps
