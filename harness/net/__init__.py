"""Net mode: the real bot process against the local testnet, through Toxiproxy, with Redis.

`harness.net.runner.run_net` is registered as `harness.collect.RUNNERS["net"]` when this
package is imported (the pytest plugin imports it).
"""
