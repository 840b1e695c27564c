"""Role-based access: the configuration's checks, principals stored hashed, the `access` command, legacy tokens."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.__main__ import main as bot_main
from bot.io.access import (
    LEGACY_CONTROL,
    LEGACY_KILL,
    PERMISSIONS,
    Access,
    AccessError,
    AccessSource,
    Principal,
    add_principal,
    legacy_principals,
    load_access_config,
    open_access,
    read_principals,
    token_digest,
)

CONFIG = load_access_config()
ROOT = Path(__file__).resolve().parents[2]


def _config_with(tmp_path: Path, change: dict[str, object]) -> Path:
    data = yaml.safe_load((ROOT / "config" / "access.yaml").read_text())

    def merge(into: dict[str, object], extra: dict[str, object]) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)  # type: ignore[arg-type]
            else:
                into[key] = value

    merge(data, change)
    path = tmp_path / "access.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_roles_are_the_checklists() -> None:
    assert {r.title for r in CONFIG.roles.values()} == {"System Admin", "Risk Manager", "Trading Ops",
                                                        "Quant Analyst", "Auditor"}
    assert set(CONFIG.roles_with("killswitch")) == {"system_admin", "risk_manager"}
    assert set(CONFIG.roles_with("resume")) == {"system_admin", "risk_manager"}
    assert set(CONFIG.roles_with("restart")) == {"system_admin", "trading_ops"}
    assert set(CONFIG.roles_with("metrics.read")) == {"system_admin", "risk_manager", "trading_ops", "quant_analyst"}
    assert CONFIG.roles["quant_analyst"].permissions == ["status.read", "metrics.read"]
    assert CONFIG.roles["auditor"].permissions == ["audit.read"]
    assert CONFIG.control_api.rate_limit.requests_per_minute == 100  # pets_security_checklist "API Security"
    assert CONFIG.control_api.cors.allow_origins == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"roles": {"auditor": {"permissions": ["audit.raed"]}}},
     "access.yaml: roles.auditor.permissions[0]: unknown permission, did you mean 'audit.read'? (got 'audit.raed'"),
    ({"control_api": {"rate_limit": {"requests_per_minute": 0}}},
     "access.yaml: control_api.rate_limit.requests_per_minute: out of range (got 0; expected a number >= 1)"),
    ({"control_api": {"cors": {"allow_origins": ["*"]}}},
     "access.yaml: control_api.cors.allow_origins[0]: a wildcard is never allowed (got '*'"),
    ({"control_api": {"idle_timout_s": 3}},
     "access.yaml: control_api.idle_timout_s: unknown key, did you mean 'idle_timeout_s'? (got 3"),
    ({"legacy_tokens": {"role": "root"}},
     "access.yaml: legacy_tokens.role: unknown role (got 'root'; expected one of "),
])
def test_a_bad_access_config_names_file_key_value_and_range(tmp_path: Path, change: dict[str, object],
                                                            expected: str) -> None:
    with pytest.raises(AccessError) as caught:
        load_access_config(_config_with(tmp_path, change))
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_access_add_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    principals, audit = tmp_path / "state" / "principals.yaml", tmp_path / "state" / "audit.jsonl"
    common = ["--principals", str(principals), "--audit", str(audit)]
    assert bot_main(["access", "add", "alice", "--role", "risk_manager", *common]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert len(token) >= 40 and token.startswith("gd_") and "\n" not in token
    assert "shown this once" in err and token not in err
    assert stat.S_IMODE(principals.stat().st_mode) == 0o600
    text = principals.read_text()
    assert token not in text and hashlib.sha256(token.encode()).hexdigest() in text
    [alice] = read_principals(principals, CONFIG)
    assert (alice.name, alice.role) == ("alice", "risk_manager")
    # the same name again is refused; an unknown role is refused with the allowed ones
    assert bot_main(["access", "add", "alice", "--role", "auditor", *common]) == 2
    assert "already exists" in capsys.readouterr().err
    assert bot_main(["access", "add", "bob", "--role", "root", *common]) == 2
    assert "expected one of system_admin" in capsys.readouterr().err
    # to a 0600 file instead of stdout
    bob_file = tmp_path / "bob.token"
    assert bot_main(["access", "add", "bob", "--role", "auditor", "--token-file", str(bob_file), *common]) == 0
    out, _ = capsys.readouterr()
    assert out == "" and stat.S_IMODE(bob_file.stat().st_mode) == 0o600
    bob_token = bob_file.read_text().strip()
    # list shows fingerprints, never tokens
    assert bot_main(["access", "list", *common]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "auditor" in listing and token not in listing and bob_token not in listing
    # rotate: the old token stops working, the role stays
    assert bot_main(["access", "rotate", "alice", *common]) == 0
    new_token = capsys.readouterr().out.strip()
    source = open_access(principals=principals, kill_token_file=tmp_path / "none", config=CONFIG)
    assert source.current().authenticate(token) is None
    assert source.current().authenticate(new_token).role == "risk_manager"  # type: ignore[union-attr]
    assert bot_main(["access", "remove", "bob", *common]) == 0
    assert source.current().authenticate(bob_token) is None
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["action"] for r in records] == ["access.add", "access.add", "access.rotate", "access.remove"]
    assert all(token not in json.dumps(r) and new_token not in json.dumps(r) for r in records)
    assert records[0]["details"]["fingerprint"] == token_digest(token)[:12]


def test_a_principals_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "principals.yaml"
    add_principal(path, CONFIG, "alice", "auditor")
    path.chmod(0o644)
    with pytest.raises(AccessError) as caught:
        open_access(principals=path, config=CONFIG)
    assert "chmod 600" in str(caught.value)
    with pytest.raises(AccessError, match="not found; create it with"):
        open_access(principals=tmp_path / "missing.yaml", config=CONFIG)


def test_a_hand_edited_principals_file_is_checked_entry_by_entry(tmp_path: Path) -> None:
    path = tmp_path / "principals.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "principals": [
        {"name": "Alice!", "role": "risk_manager", "sha256": "a" * 64},
        {"name": "bob", "role": "trader", "sha256": "b" * 64},
        {"name": "carol", "role": "auditor", "sha256": "plain-token"},
        {"name": "dave", "role": "auditor", "sha256": "a" * 64}]}))
    path.chmod(0o600)
    with pytest.raises(AccessError) as caught:
        read_principals(path, CONFIG)
    text = "\n".join(caught.value.problems)
    assert "principals[0].name: bad name" in text and "principals[1].role: unknown role" in text
    assert "principals[2].sha256: not a sha256" in text and "principals[3].sha256: the same token" in text


def test_legacy_tokens_become_system_admin_principals(tmp_path: Path) -> None:
    kill = tmp_path / "kill_token"
    kill.write_text("the-one-token\n")
    kill.chmod(0o600)
    same, _ = legacy_principals(CONFIG, "the-one-token", kill)
    assert [(p.name, p.role) for p in same] == [(LEGACY_KILL, "system_admin")]
    both, _ = legacy_principals(CONFIG, "another-token", kill)
    assert [p.name for p in both] == [LEGACY_KILL, LEGACY_CONTROL]
    kill.write_text("sha256:" + token_digest("hashed-token"))
    hashed, _ = legacy_principals(CONFIG, None, kill)
    assert Access(CONFIG, hashed).authenticate("hashed-token") is not None
    kill.chmod(0o644)
    none, problems = legacy_principals(CONFIG, None, kill)
    assert none == [] and "chmod 600" in problems[0]
    off = CONFIG.model_copy(update={"legacy_tokens": CONFIG.legacy_tokens.model_copy(update={"enabled": False})})
    assert legacy_principals(off, "the-one-token", kill) == ([], [])


def test_a_file_principal_wins_over_a_legacy_token_with_the_same_hash(tmp_path: Path) -> None:
    path = tmp_path / "principals.yaml"
    token = add_principal(path, CONFIG, "ops", "trading_ops")
    source = AccessSource(CONFIG, path, [Principal(LEGACY_CONTROL, "system_admin", token_digest(token), "env")])
    source.load()
    assert source.current().decide(token, "killswitch").code == "forbidden"


def test_the_kill_switch_verifier_names_the_refusal() -> None:
    access = Access(CONFIG, [Principal("ops", "trading_ops", token_digest("ops-token")),
                             Principal("risk", "risk_manager", token_digest("risk-token"))])
    verify = access.killswitch_verifier()
    assert verify("risk-token") is True
    assert verify("nobody") == "bad credentials"
    refusal = verify("ops-token")
    assert isinstance(refusal, str) and "trading_ops" in refusal and "'killswitch'" in refusal


@settings(max_examples=60, deadline=None)
@given(grants=st.dictionaries(st.sampled_from(sorted(CONFIG.roles)), st.sets(st.sampled_from(sorted(PERMISSIONS))),
                              min_size=1),
       permission=st.sampled_from(sorted(PERMISSIONS)))
def test_a_principal_may_do_exactly_what_its_role_grants(grants: dict[str, set[str]], permission: str) -> None:
    roles = {name: role.model_copy(update={"permissions": sorted(grants.get(name, set()))})
             for name, role in CONFIG.roles.items()}
    config = CONFIG.model_copy(update={"roles": roles})
    access = Access(config, [Principal(f"p-{r}", r, token_digest(f"token-{r}")) for r in roles])
    for role in roles:
        decision = access.decide(f"token-{role}", permission)
        assert decision.allowed == (permission in grants.get(role, set()))
        assert decision.status == (200 if decision.allowed else 403)
        assert decision.principal is not None and decision.principal.role == role
    assert access.decide("token-of-nobody", permission).status == 401
    assert access.decide(None, permission).code == "missing_credential"
