"""Paths the security tests share (a module of its own: `conftest` is not importable by name when
several test folders have one)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "security"
