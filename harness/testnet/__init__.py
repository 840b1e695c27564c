"""Local Binance USD-M testnet: one matching engine, two transports (in-process and HTTP/WS).

- `engine.Engine` / `errors.BinanceError`: the pure synchronous venue with fault controls (its concerns
  in `gate`, `rest`, `matching`, `accounts`, `fault_controls`, `marketdata`; the data in `model`).
- `sim.SimExchange`: the bot's Exchange protocol in-process (sim mode).
- `server.start_testnet` / `server.run_testnet`: REST + WebSocket + admin API on one port (net mode).
- `ccxt_client.make_ccxt_client`: an unmodified ccxt binanceusdm pointed at the testnet.
- `market`: seeded regime-switching random walk and the OHLCV CSV loader.
"""
