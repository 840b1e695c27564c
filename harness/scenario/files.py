"""Where scenarios and their config come from: the config directory, limits, profiles, checklist ids,
and which files look like scenarios."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from harness.scenario.errors import Problem, ScenarioError


def default_config_dir() -> Path:
    """$GAMEDAY_CONFIG_DIR, else the project's config/ (the bot's own rule: bot.config.config_dir)."""
    from bot.config import config_dir

    return config_dir()


def project_root() -> Path:
    import harness

    return Path(harness.__file__).resolve().parent.parent


HARNESS_CONFIG = "harness.yaml"
DEFAULT_MAX_BARS = 100_000


def max_bars(config_dir: Path | None = None) -> int:
    """`scenario.max_bars` of `<config>/harness.yaml` (DEFAULT_MAX_BARS without the file)."""
    path = (config_dir or default_config_dir()) / HARNESS_CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return DEFAULT_MAX_BARS
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError([Problem(str(path), 1, "", f"cannot read the harness limits: {exc}")]) from None
    value = (data.get("scenario") or {}).get("max_bars", DEFAULT_MAX_BARS) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScenarioError([Problem(str(path), 1, "scenario.max_bars", "expected an integer >= 1", value)])
    return value


def known_profiles(config_dir: Path | None = None) -> frozenset[str]:
    directory = (config_dir or default_config_dir()) / "profiles"
    return frozenset(p.stem for p in directory.glob("*.yaml"))


def load_checklist_ids(config_dir: Path | None = None) -> frozenset[str]:
    """Ids in `<config>/checklist.yaml`; ChecklistError when it is missing or malformed."""
    from harness.checklist import checklist_ids

    return checklist_ids(config_dir)


def covers_ok(cid: str, known: Iterable[str]) -> bool:
    """An id is covered when it is a checklist id or a refinement of one (more dots)."""
    known = set(known)
    return cid in known or any(cid.startswith(k + ".") for k in known)


SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")
_SNIFF_LIMIT = 1 << 20  # a larger file is data, not a scenario
_SCENARIO_KEY_RE = re.compile(r"""^["']?scenario["']?\s*:""", re.MULTILINE)
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOP_KEY_RE = re.compile(r"""^["']?(scenario|expect|steps)["']?\s*:""", re.MULTILINE)  # YAML: column 0
_JSON_KEY_RE = re.compile(r"""^\s*"(scenario|expect|steps)"\s*:""", re.MULTILINE)


def scenario_signs(path: str | Path) -> str | None:
    """Why the file at `path` looks like a scenario, or None when it does not.

    A `.yaml` / `.yml` / `.json` file looks like a scenario when it is empty (or only comments),
    or its top level is a mapping with a `scenario` key, an `expect` key, or a `steps` list whose
    items have `fault:`; a file that does not parse looks like one when a line starts with one of
    those keys. Collection turns each such file into a test or a collection error, never a skip;
    other YAML / JSON (fixtures, configs, workflows, runbook steps without faults) is left alone.
    """
    path = Path(path)
    if path.suffix not in SCENARIO_SUFFIXES or not path.is_file():
        return None
    try:
        if path.stat().st_size > _SNIFF_LIMIT:
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not "\n".join(line.split("#", 1)[0] for line in text.splitlines()).strip():
        return "it is empty"
    if _SCENARIO_KEY_RE.search(text):  # the common case, without parsing
        return "it has a scenario: key"
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)  # nosec B506 - a SafeLoader; JSON parses as YAML too
    except yaml.YAMLError:
        found = (_JSON_KEY_RE if path.suffix == ".json" else _TOP_KEY_RE).search(text)
        return f"it does not parse and has a {found[1]}: key" if found else None
    if not isinstance(data, dict):
        return None
    if "scenario" in data:
        return "it has a scenario: key"
    if "expect" in data:
        return "it has an expect: key"
    steps = data.get("steps")
    if isinstance(steps, list) and any(isinstance(s, dict) and "fault" in s for s in steps):
        return "its steps: have fault:"
    return None
