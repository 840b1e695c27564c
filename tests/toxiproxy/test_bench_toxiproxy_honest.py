"""benchmarks/bench_toxiproxy.py must fail when the proxy it times does nothing (issue 10 item 6):
a proxy that forwards nothing, or a measured port that is not the proxy's, is fast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.toxiproxy.link import Link

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_toxiproxy  # noqa: E402

ARGS = ["--mb", "2", "--runs", "1"]


def test_the_throughput_figures_stand_with_the_real_proxy(capsys):
    assert bench_toxiproxy.main(ARGS) == 0
    assert "upstream (client->server)" in capsys.readouterr().out


def test_the_throughput_figures_fail_when_the_proxy_forwards_nothing(monkeypatch):
    async def forward_nothing(self, data):
        return None

    monkeypatch.setattr(Link, "_write", forward_nothing)
    monkeypatch.setattr(bench_toxiproxy, "STALL_S", 2.0)
    with pytest.raises(SystemExit, match="received 0 of 2000000 bytes.*measures nothing") as exc:
        bench_toxiproxy.main(ARGS)
    assert exc.value.code


def test_the_throughput_figures_fail_when_the_port_bypasses_the_proxy(monkeypatch):
    real = bench_toxiproxy.proxied_port

    def bypass(client, upstream):  # the proxy exists, but the figures are taken on the upstream's own port
        real(client, upstream)
        return int(upstream.address.rpartition(":")[2])

    monkeypatch.setattr(bench_toxiproxy, "proxied_port", bypass)
    with pytest.raises(SystemExit, match="did not go through the proxy") as exc:
        bench_toxiproxy.main(ARGS)
    assert exc.value.code
