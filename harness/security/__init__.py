"""The security gate (`gameday security`): bandit, pip-audit and trivy, the hardened container
files, `.env` in git, and the host readiness checks, each with a verdict pass / fail / not
verified, written as SARIF 2.1.0 and a sealed evidence set. See harness.security.gate."""
