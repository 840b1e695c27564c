"""Sim mode: the real bot core and runtime in-process, under virtual time.

`harness.sim.runner.run_sim` is registered as `harness.collect.RUNNERS["sim"]` when that module is
imported (the pytest plugin imports it). The pieces: `constants` (what every part agrees on),
`transport` (feed timing, REST transport, disks), `steps` (a step being carried out), `world` (one
run's exchange, bot and agenda), `outcome` (the end state's order checks), `alerts` (in-memory
alert receivers).
"""
