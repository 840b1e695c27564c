"""`gameday validate`: the strategy on paper, judged against the profile's validation thresholds.

markets.py (generated regimes, recorded candle files) -> paper.py (one bot, one paper account,
one market) -> run.py (the market set, played on until the trade count) -> metrics.py (numpy
figures) -> result.py (verdicts, validation.json, the sealed set, the table, `read_validation`
for readers) <- cli.py (the command).
"""
