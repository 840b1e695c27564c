"""Run every benchmark in this folder (the README's `make bench`). Each prints its own figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_core.py", "bench_state.py", "bench_testnet.py", "bench_toxiproxy.py", "bench_scenarios.py",
         "bench_net.py", "bench_validate.py", "bench_bookkeeping.py", "edge_after_costs.py", "bench_control.py",
         "bench_alerts.py"]


def main() -> int:
    failed = []
    for name in ORDER:
        path = HERE / name
        if not path.exists():
            continue
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(path)], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
