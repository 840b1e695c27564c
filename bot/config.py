"""Load the policy files, overlay a profile, validate, and explain every problem in one line.

`config/risk_policy.yaml` + `config/circuit_breakers.toml` + `config/slas.yaml` form one tree
(their top-level keys are disjoint); `config/profiles/NAME.yaml` overlays that tree under
`overlay:`. A problem is reported as
`<file>: <dotted.key>: <what is wrong> (got <value>; expected <range or type>)`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError

from bot.core.policy import Policy

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_PROFILE = "futures"

# Which file holds each top-level key of the merged tree.
SECTIONS: dict[str, str] = {
    "position_sizing": "risk_policy",
    "exits": "risk_policy",
    "execution_costs": "risk_policy",
    "orders": "risk_policy",
    "validation": "risk_policy",
    "capital_ramp": "risk_policy",
    "red_flags": "risk_policy",
    "circuit_breakers": "breakers",
    "exchange_outage": "breakers",
    "kill_switch": "breakers",
    "reaction": "slas",
    "alerts": "slas",
    "incident_response": "slas",
    "runbooks": "slas",
    "key_management": "slas",
    "retention": "slas",
}


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    what: str
    got: str
    expected: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.what} (got {self.got}; expected {self.expected})"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    profile: str
    files: tuple[Path, ...]
    digest: str  # sha256 of the merged tree: recorded in evidence


def config_dir() -> Path:
    return Path(os.environ.get("GAMEDAY_CONFIG_DIR", DEFAULT_CONFIG_DIR))


def known_profiles(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in ((directory or config_dir()) / "profiles").glob("*.yaml"))


def load_policy(
    profile: str | None = DEFAULT_PROFILE,
    *,
    directory: Path | None = None,
    policy_file: Path | None = None,
    breakers_file: Path | None = None,
    slas_file: Path | None = None,
) -> LoadedPolicy:
    """Load and validate; raise ConfigError listing every problem found."""
    base = directory or config_dir()
    paths = {
        "risk_policy": policy_file or base / "risk_policy.yaml",
        "breakers": breakers_file or base / "circuit_breakers.toml",
        "slas": slas_file or base / "slas.yaml",
    }
    problems: list[Problem] = []
    tree: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for role, path in paths.items():
        data = _read_mapping(path, problems)
        for key, value in data.items():
            owner = SECTIONS.get(key)
            if owner != role:
                problems.append(_unknown_key(path.name, key, value, [k for k, r in SECTIONS.items()
                                                                     if r == role]))
                continue
            tree[key] = value
            provenance[key] = path.name
    for key, role in SECTIONS.items():
        provenance.setdefault(key, paths[role].name)

    files = list(paths.values())
    if profile is not None:
        profile_path = base / "profiles" / f"{profile}.yaml"
        if not profile_path.is_file():
            problems.append(Problem("profiles", profile, "unknown profile", repr(profile),
                                    "one of " + ", ".join(known_profiles(base))))
        else:
            files.append(profile_path)
            overlay = _read_mapping(profile_path, problems)
            extra = set(overlay) - {"description", "overlay"}
            for key in sorted(extra):
                problems.append(_unknown_key(profile_path.name, key, overlay[key],
                                             ["description", "overlay"]))
            body = overlay.get("overlay") or {}
            if not isinstance(body, Mapping):
                problems.append(Problem(profile_path.name, "overlay", "wrong type",
                                        _show(body), "a mapping of policy keys"))
            else:
                _overlay(tree, body, (), provenance, profile_path.name)
    policy = _validated(tree, problems, provenance)
    return LoadedPolicy(policy, profile or "", tuple(files), policy_digest(policy))


def _validated(tree: dict[str, Any], problems: list[Problem], provenance: Mapping[str, str]) -> Policy:
    """The merged tree as a Policy; ConfigError with `problems` so far, else every validation problem."""
    if problems:
        raise ConfigError(problems)
    try:
        # strict: a number must be a number (TOML threshold_pct = "3" is an error, not 3.0), a flag a
        # bool; YAML/TOML lists stand for the model's tuples
        policy = Policy.model_validate(_lists_as_tuples(tree), strict=True)
    except ValidationError as exc:
        raise ConfigError(_without_typo_echoes([_explain(e, provenance) for e in exc.errors()])) from None
    invariants = check_invariants(policy, provenance)
    if invariants:
        raise ConfigError(invariants)
    return policy


def overlay_policy(policy: Policy, settings: Mapping[str, Any], source: str) -> Policy:
    """`policy` with `settings` (dotted key -> value, e.g. `position_sizing.max_total_exposure_pct`)
    laid over it, validated as a profile's overlay is (strict types, ranges, the invariants); raise
    ConfigError naming each bad key, `source` being where the settings came from."""
    tree: dict[str, Any] = policy.model_dump(mode="json")
    provenance: dict[str, str] = {}
    problems: list[Problem] = []
    for dotted, value in settings.items():
        parts = dotted.split(".")
        node = tree
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}  # an unknown key: strict validation names it (did you mean)
            if not isinstance(child, dict):
                problems.append(Problem(source, ".".join(parts[:i + 1]), "not a table of keys",
                                        _show(child), f"a key without the sub-key {'.'.join(parts[i + 1:])!r}"))
                break
            node = child
        else:
            node[parts[-1]] = value
            provenance[dotted] = source
    return _validated(tree, problems, provenance)


def policy_digest(policy: Policy) -> str:
    """sha256 of the merged policy: what evidence (a validation, a run) names as its config."""
    return "sha256:" + hashlib.sha256(json.dumps(policy.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _without_typo_echoes(problems: list[Problem]) -> list[Problem]:
    """A misspelt key is reported once, as unknown with its suggestion, not also as missing."""
    suggested = {p.key.rsplit(".", 1)[0] + "." + p.what.split("'")[1]
                 for p in problems if p.what.startswith("unknown key, did you mean")}
    return [p for p in problems if not (p.what == "missing key" and p.key in suggested)]


def check_invariants(policy: Policy, provenance: Mapping[str, str] | None = None) -> list[Problem]:
    """Rules across fields: tiers in order, stop min <= max, reductions progressive."""
    prov = provenance or {}
    out: list[Problem] = []

    def add(key: str, what: str, got: object, expected: str) -> None:
        out.append(Problem(_file_for(key, prov), key, what, _show(got), expected))

    def tiers(prefix: str, warning: float | None, critical: float, emergency: float | None) -> None:
        if warning is not None and warning >= critical:
            add(f"{prefix}.warning_pct", "tiers out of order", warning,
                f"warning_pct < threshold_pct ({critical})")
        if emergency is not None and emergency <= critical:
            add(f"{prefix}.emergency_pct", "tiers out of order", emergency,
                f"emergency_pct > threshold_pct ({critical})")

    dd = policy.circuit_breakers.drawdown
    tiers("circuit_breakers.drawdown", dd.warning_pct, dd.threshold_pct, dd.emergency_pct)
    tiers("circuit_breakers.drawdown.peak", dd.peak.warning_pct, dd.peak.threshold_pct,
          dd.peak.emergency_pct)
    stop = policy.exits.stop_loss
    if stop.min_pct > stop.max_pct:
        add("exits.stop_loss.min_pct", "stop min above max", stop.min_pct,
            f"<= exits.stop_loss.max_pct ({stop.max_pct})")
    sizing = policy.position_sizing
    if sizing.risk_per_trade > sizing.max_risk_per_trade:
        add("position_sizing.risk_per_trade", "above its maximum", sizing.risk_per_trade,
            f"<= position_sizing.max_risk_per_trade ({sizing.max_risk_per_trade})")
    if sizing.max_position_pct > sizing.max_total_exposure_pct:
        add("position_sizing.max_position_pct", "above total exposure cap", sizing.max_position_pct,
            f"<= position_sizing.max_total_exposure_pct ({sizing.max_total_exposure_pct})")
    bounds = sizing.zones.boundaries_atr_pct
    if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        add("position_sizing.zones.boundaries_atr_pct", "zone boundaries not increasing", list(bounds),
            "four strictly increasing ATR % values")
    losses = policy.circuit_breakers.consecutive_losses
    previous_losses, previous_mult = 0, 1.0
    for i, step in enumerate(losses.size_reduction):
        key = f"circuit_breakers.consecutive_losses.size_reduction[{i}]"
        if step.losses <= previous_losses or step.losses >= losses.max_consecutive_losses:
            add(f"{key}.losses", "steps out of order", step.losses,
                f"increasing, between {previous_losses + 1} and "
                f"{losses.max_consecutive_losses - 1} (below max_consecutive_losses)")
        if step.size_multiplier > previous_mult:
            add(f"{key}.size_multiplier", "reduction not progressive", step.size_multiplier,
                f"<= {previous_mult} (each step at most the previous)")
        previous_losses, previous_mult = step.losses, step.size_multiplier
    inference = policy.circuit_breakers.latency.inference
    if inference.p95_ms > inference.p99_ms:
        add("circuit_breakers.latency.inference.p95_ms", "tiers out of order", inference.p95_ms,
            f"<= p99_ms ({inference.p99_ms})")
    backoff = policy.circuit_breakers.latency.backoff
    if backoff.initial_ms > backoff.max_ms:
        add("circuit_breakers.latency.backoff.initial_ms", "above its maximum", backoff.initial_ms,
            f"<= max_ms ({backoff.max_ms})")
    ramp = policy.capital_ramp
    names = [s.name for s in ramp.stages]
    if not ramp.stages:
        add("capital_ramp.stages", "no stage", [], "at least one stage (the first is where a new bot starts)")
    for i, stage in enumerate(ramp.stages):
        key = f"capital_ramp.stages[{i}]"
        if names.count(stage.name) > 1:
            add(f"{key}.name", "duplicate stage name", stage.name, "unique stage names")
        if stage.paper and i > 0 and not ramp.stages[i - 1].paper:
            add(f"{key}.paper", "paper stage after a real-money stage", stage.paper,
                "paper stages first, then the real-money ones")
        real = [s.max_capital_usd for s in ramp.stages[:i] if not s.paper]
        if not stage.paper and real and (stage.max_capital_usd is not None and
                                         any(c is None or c > stage.max_capital_usd for c in real)):
            add(f"{key}.max_capital_usd", "ramp goes down", stage.max_capital_usd,
                "each real-money stage's cap >= the previous one (null: full capital, last)")
    return out


# --- helpers -------------------------------------------------------------------------------


def _read_mapping(path: Path, problems: list[Problem]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(Problem(str(path), "(file)", "file not found", str(path),
                                "an existing file (see config/ for the defaults)"))
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(path.name, "(file)", "not UTF-8 text", f"byte 0x{exc.object[exc.start]:02x} at "
                                f"offset {exc.start}", "a " + ("TOML" if path.suffix == ".toml" else "YAML")
                                + " text file"))
        return {}
    except OSError as exc:
        problems.append(Problem(str(path), "(file)", "cannot read", exc.strerror or str(exc), "a readable file"))
        return {}
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        problems.append(Problem(path.name, "(syntax)", "cannot parse", detail,
                                "valid " + ("TOML" if path.suffix == ".toml" else "YAML")))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem(path.name, "(top level)", "wrong type", _show(data), "a mapping"))
        return {}
    return data


def _lists_as_tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists_as_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_lists_as_tuples(v) for v in value)
    return value


def _overlay(tree: dict[str, Any], overlay: Mapping[str, Any], prefix: tuple[str, ...],
             provenance: dict[str, str], source: str) -> None:
    for key, value in overlay.items():
        path = (*prefix, str(key))
        current = tree.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _overlay(current, value, path, provenance, source)
        else:
            tree[key] = value
            provenance[".".join(path)] = source


def _file_for(dotted: str, provenance: Mapping[str, str]) -> str:
    parts = dotted.replace("[", ".[").split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end]).replace(".[", "[")
        if candidate in provenance:
            return provenance[candidate]
    return "config"


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _field_info(loc: tuple[int | str, ...]) -> Any:
    model: Any = Policy
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        model = next((a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)
                      and issubclass(a, BaseModel)), annotation)
    return info


def _range_text(metadata: Any) -> str | None:
    """The bounds among a field's constraints (annotated_types Gt / Ge / Lt / Le) as a reader says them."""
    lower = upper = None
    for meta in metadata:
        if isinstance(meta, annotated_types.Gt):
            lower = f"({meta.gt}"
        elif isinstance(meta, annotated_types.Ge):
            lower = f"[{meta.ge}"
        elif isinstance(meta, annotated_types.Lt):
            upper = f"{meta.lt})"
        elif isinstance(meta, annotated_types.Le):
            upper = f"{meta.le}]"
    if lower and upper:
        return f"a number in {lower}, {upper}"
    if lower:
        return f"a number {'>' if lower[0] == '(' else '>='} {lower[1:]}"
    if upper:
        return f"a number {'<' if upper[-1] == ')' else '<='} {upper[:-1]}"
    return None


def _explain(err: Any, provenance: Mapping[str, str]) -> Problem:
    loc = tuple(err["loc"])
    key = _dotted(loc)
    kind = err["type"]
    got = _show(err.get("input"))
    file = _file_for(key, provenance)
    info = _field_info(loc)
    if kind == "extra_forbidden":
        parent = _field_info(loc[:-1])
        allowed = _allowed_keys(parent) if loc[:-1] else sorted(Policy.model_fields)
        return _unknown_key(file, key, err.get("input"), allowed)
    if kind == "missing":
        what = "missing section" if _is_model(info) else "missing key"
        return Problem(file, key, what, "nothing", _expected(info))
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        return Problem(file, key, "out of range", got, _range_text(getattr(info, "metadata", ())) or err["msg"])
    if kind == "literal_error":
        return Problem(file, key, "not an allowed value", got, err["ctx"]["expected"])
    if kind.endswith(("_type", "_parsing")):
        return Problem(file, key, "wrong type", got, _expected(info))
    return Problem(file, key, err["msg"].lower(), got, _expected(info))


def _is_model(info: Any) -> bool:
    annotation = getattr(info, "annotation", None)
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _allowed_keys(info: Any) -> list[str]:
    annotation = getattr(info, "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sorted(annotation.model_fields)
    return []


def _expected(info: Any) -> str:
    if info is None:
        return "see config/ for the defaults"
    if _is_model(info):
        return "a table with keys " + ", ".join(_allowed_keys(info))
    return _range_text(info.metadata) or _type_text(info.annotation)


def _type_text(annotation: Any) -> str:
    """`float | None` with its constraints as a reader says it: "a number > 0, or null"."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if annotation in names:
        return names[annotation]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = args
        constraints = [m for meta in metadata for m in getattr(meta, "metadata", [meta])]
        return _range_text(constraints) or _type_text(base)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _type_text(rest[0]) + ", or null"
    return str(annotation).replace("typing.", "")


def _unknown_key(file: str, key: str, value: object, allowed: list[str]) -> Problem:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, allowed, n=1)
    what = f"unknown key, did you mean '{close[0]}'?" if close else "unknown key"
    return Problem(file, key, what, _show(value), "one of " + ", ".join(allowed))


def _show(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def summary(loaded: LoadedPolicy) -> list[str]:
    p = loaded.policy
    cb = p.circuit_breakers
    dd = cb.drawdown
    peak = (f"; from peak {dd.peak.threshold_pct}%"
            f"{f' (emergency {dd.peak.emergency_pct}%)' if dd.peak.emergency_pct else ''}"
            if dd.peak.enabled else "")
    return [
        f"profile {loaded.profile or '(base files only)'}: ok ({loaded.digest[:19]})",
        f"  sizing: kelly x{p.position_sizing.kelly_fraction}, risk/trade "
        f"{p.position_sizing.risk_per_trade:.0%} (max {p.position_sizing.max_risk_per_trade:.0%}), "
        f"position <= {p.position_sizing.max_position_pct:.0%}, exposure <= "
        f"{p.position_sizing.max_total_exposure_pct:.0%}"
        + (f", zones blocked {list(p.position_sizing.zones.blocked)}"
           if p.position_sizing.zones.enabled else ""),
        f"  drawdown (intraday): warning {dd.warning_pct}% / halt {dd.threshold_pct}%"
        f"{f' / emergency {dd.emergency_pct}%' if dd.emergency_pct else ''}{peak}; "
        f"cooldown {dd.cooldown_minutes:g} min",
        f"  losses: halt at {cb.consecutive_losses.max_consecutive_losses}, steps "
        + (", ".join(f"{s.losses}->x{s.size_multiplier}" for s in cb.consecutive_losses.size_reduction)
           or "none"),
        f"  volatility: spread {cb.volatility.spread.max_spread_bps} bps, ATR x"
        f"{cb.volatility.atr.spike_threshold}, move {cb.volatility.price_move.max_move_pct}%",
        f"  latency: ws {cb.latency.websocket.max_lag_seconds}s, inference p95 "
        f"{cb.latency.inference.p95_ms}ms / p99 {cb.latency.inference.p99_ms}ms, placement "
        f"{cb.latency.order_placement.max_ms}ms, fill {cb.latency.order_fill.max_ms}ms",
        f"  orders: {'post-only ' if p.orders.post_only else ''}{p.orders.entry_type} entries; "
        f"kill switch graceful timeout {p.kill_switch.graceful_timeout_minutes:g} min",
        "  validation: " + validation_summary(p),
    ]


def validation_summary(policy: Policy) -> str:
    """`>= 100 trades, win rate >= 60%, ...` for the thresholds set; the rest named as not set."""
    v = policy.validation
    parts = [text for value, text in (
        (v.min_trades, f">= {v.min_trades} trades"),
        (v.min_win_rate, f"win rate >= {(v.min_win_rate or 0) * 100:g}%"),
        (v.min_profit_factor, f"profit factor >= {v.min_profit_factor}"),
        (v.min_sharpe, f"Sharpe >= {v.min_sharpe}"),
        (v.max_drawdown_pct, f"max drawdown <= {v.max_drawdown_pct}%"),
        (v.min_paper_days, f">= {v.min_paper_days:g} paper days"),
    ) if value is not None]
    unset = [name for name, value in v.model_dump().items() if value is None]
    return (", ".join(parts) or "no threshold set") + (f" (not set: {', '.join(unset)})" if unset else "")


# Every time threshold of the policy: `time_scale` multiplies these (net-mode gate runs test
# "WS lag > 5 s" at 0.5 s); a scaled run records the scale in its evidence.
TIME_FIELDS: tuple[str, ...] = (
    "circuit_breakers.drawdown.cooldown_minutes",
    "circuit_breakers.consecutive_losses.cooldown_minutes",
    "circuit_breakers.latency.websocket.max_lag_seconds",
    "circuit_breakers.latency.inference.p95_ms",
    "circuit_breakers.latency.inference.p99_ms",
    "circuit_breakers.latency.order_placement.max_ms",
    "circuit_breakers.latency.order_fill.max_ms",
    "circuit_breakers.latency.backoff.initial_ms",
    "circuit_breakers.latency.backoff.max_ms",
    "exchange_outage.major_after_minutes",
    "kill_switch.graceful_timeout_minutes",
    "reaction.breaker_realtime_ms",
    "reaction.kill_switch_immediate_flat_s",
    "reaction.kill_switch_graceful_timeout_minutes",
    "alerts.delivery_seconds",
)


def scale_time(policy: Policy, scale: float) -> Policy:
    """The policy with every time threshold multiplied by `scale` (> 0)."""
    if not (scale > 0 and scale == scale and scale != float("inf")):
        raise ValueError(f"time scale must be a positive number, got {scale!r}")
    if scale == 1.0:
        return policy
    tree = policy.model_dump()
    for dotted in TIME_FIELDS:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node[leaf] = node[leaf] * scale
    return Policy.model_validate(tree)


@dataclass(frozen=True)
class RequestBudget:
    """The exchange's request-weight budget as it bounds how often the bot may reconcile.

    Binance USD-M: REQUEST_WEIGHT 2400 per IP per minute; one reconcile is GET /fapi/v3/account
    (weight 5) and GET /fapi/v3/positionRisk (weight 5). Reconciles may use `reconcile_share` of the
    budget: the rest stays for bars, order calls, cancels and the queries that resolve unknown outcomes.
    """

    weight_limit_per_minute: int = 2400
    reconcile_calls: tuple[tuple[str, int], ...] = (("GET /fapi/v3/account", 5), ("GET /fapi/v3/positionRisk", 5))
    reconcile_share: float = 0.5

    def __post_init__(self) -> None:
        if self.weight_limit_per_minute < 1 or not 0 < self.reconcile_share <= 1:
            raise ValueError(f"request budget: weight_limit_per_minute must be >= 1 (got "
                             f"{self.weight_limit_per_minute}) and reconcile_share in (0, 1] "
                             f"(got {self.reconcile_share})")

    @property
    def reconcile_weight(self) -> int:
        return sum(weight for _, weight in self.reconcile_calls)

    def reconcile_floor_ms(self) -> int:
        """The shortest reconcile interval that stays inside `reconcile_share` of the weight limit."""
        return math.ceil(60_000 * self.reconcile_weight / (self.weight_limit_per_minute * self.reconcile_share))

    def explain_floor(self) -> str:
        calls = " + ".join(f"{name} ({weight})" for name, weight in self.reconcile_calls)
        return (f"one reconcile costs weight {self.reconcile_weight} ({calls}); the exchange allows "
                f"{self.weight_limit_per_minute} per minute and reconciles may use {self.reconcile_share:.0%} of it, "
                f"so at most one every {self.reconcile_floor_ms()} ms")
