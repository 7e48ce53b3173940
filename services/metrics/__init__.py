"""Prometheus metrics of a process (`/metrics`): counters and histograms incremented where
things happen (`instruments`), gauges computed at scrape time from the state the process
already holds (`collector`, fed by `sources`), consumer lags refreshed before each scrape
(`lag`), the HTTP middleware that counts requests (`middleware`) and the exposition
(`exposition`). Import the modules themselves: this package imports nothing, so roles
register their sources without pulling in the HTTP side.

One registry per process: every process serves its own metrics (the ingress on its port,
any process on `NGPU_METRICS_PORT`), so roles in separate processes never share one."""
