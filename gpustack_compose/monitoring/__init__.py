"""Monitoring beside a stack (``monitoring:`` in the stack file): Prometheus
scraping every vLLM server, the proxy and the GPUs; the plan as recording
rules; a Grafana dashboard built from ``queries.PANELS``."""
