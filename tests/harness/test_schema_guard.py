"""tests/conftest.py's guard: a test whose bot emits outside the event schema fails, naming it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_test_that_makes_the_bot_emit_an_undeclared_field_fails(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_emits="""
        from bot.core.events import EventBus

        def test_declared():
            EventBus().emit("audit.repaired", 0, cut_bytes=1, cut_sha256="ab")

        def test_undeclared():
            EventBus().emit("audit.repaired", 0, cut_bytes=1, cut_sha256="ab", venue="x")

        def test_wrong_type():
            EventBus().emit("trading.halted", 0, reason="x", requires_manual_resume="yes")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "--gameday-report",
                                           str(pytester.path / "reports"))
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_undeclared*",
        "*audit.repaired: field 'venue' is not declared (declared: cut_bytes, cut_sha256)*",
        "*ERROR at teardown of test_wrong_type*",
        "*trading.halted: field 'requires_manual_resume' is 'yes', declared true or false*",
    ])
