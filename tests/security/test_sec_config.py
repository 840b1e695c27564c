"""config/security.yaml is validated at the door: file, key, value and the allowed range."""

from __future__ import annotations

from pathlib import Path

import pytest
from sec_support import ROOT

from bot.config import ConfigError
from harness.security.config import SecurityConfig, load_security_config


def test_the_shipped_config_is_the_documented_defaults() -> None:
    cfg = load_security_config(ROOT / "config" / "security.yaml")
    assert cfg.bandit.fail_severity == "MEDIUM" and cfg.bandit.max_findings == 0
    assert cfg.trivy.fail_severities == ["HIGH", "CRITICAL"] and cfg.trivy.max_findings == 0
    assert cfg.trivy.version == "0.59.1" and cfg.pip_audit.requirements == ["constraints.txt"]
    assert cfg.host.database.rules.min_length == 32
    assert cfg == SecurityConfig()  # the file states the defaults the code falls back to


@pytest.mark.parametrize(("text", "line"), [
    ("bandit:\n  fail_severity: medium\n",
     "bandit.fail_severity: not an allowed value (got 'medium'; expected one of 'LOW', 'MEDIUM' or 'HIGH')"),
    ("bandit:\n  max_findngs: 1\n", "bandit.max_findngs: unknown key (got 1; expected one of paths, fail_severity"),
    ("trivy:\n  max_findings: -1\n", "trivy.max_findings: out of range (got -1; expected >= 0)"),
    ("host:\n  tls:\n    hosts: [{host: x, port: 70000}]\n",
     "host.tls.hosts.0.port: out of range (got 70000; expected <= 65535)"),
    ("pip_audit:\n  ignore: [{id: GHSA-1, reason: ok}]\n", "pip_audit.ignore.0.reason: too short"),
    ("- a list\n", "(top level): wrong type (got list; expected a mapping)"),
    ("bandit: [\n", "line 2: not valid YAML"),
])
def test_mistakes_are_named(tmp_path: Path, text: str, line: str) -> None:
    path = tmp_path / "security.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_security_config(path)
    assert any(str(p).startswith(f"security.yaml: {line}") for p in exc.value.problems), exc.value.problems
