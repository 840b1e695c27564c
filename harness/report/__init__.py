"""The readiness report a risk committee signs (issue 14).

    sets.py       find evidence sets, verify their manifests, read what they hold
    checklist.py  config/checklist.yaml items and the evidence forms they cite
    config.py     config/report.yaml: freshness windows, attestation expiry limits
    attest.py     `gameday attest`: human attestations, audited, in config/attestations.yaml
    readiness.py  every item judged: verified / failed / stale / not run / manual
    plots.py      matplotlib (Agg) plots as inline SVG
    intoto.py     attestation.json: in-toto Statement v1, test-result v0.1
    build.py      report.html, report.md, readiness.json, attestation.json (Jinja2 templates)
    commands.py   the `gameday report` and `gameday attest` subcommands
"""
