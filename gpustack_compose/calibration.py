"""Numbers the planner plans with, and where each one comes from.

Measured with real vLLM 0.26.0 on one H100 80GB HBM3 (docs/facts.md and
docs/h100-vllm-0.26.0.md), unless a line says otherwise. vLLM's
own accounting (``v1/worker/gpu_worker.py``, ``utils/mem_utils.py``):

    requested = ceil(util * total)                       # checked against free at start
    KV cache  = requested - weights - activation peak - non-torch increase
    resident  = weights + KV + (CUDA context, CUDA graphs, allocator slack)

Everything here is bytes.
"""

from __future__ import annotations

import math

from gpustack_compose.units import GiB, MiB, gib

# Memory that is never free on an idle card: 78.66 of 79.18 GiB were free with
# no process running (the 0.52 GiB the H100 report says "is never free").
DEFAULT_RESERVE = gib(0.52)

# "Model loading took" exceeds parameters x dtype bytes by 0.06 GiB (14B: 27.57
# vs 27.51) and 0.10 GiB (7B: 14.29 vs 14.19): rotary caches and buffers.
WEIGHTS_LOAD_OVERHEAD = gib(0.11)

# "non-torch increase" in vLLM's profile: 0.22 GiB for both models, cold
# (0.17 warm). Includes the ~160 MiB cuBLAS workspace.
NON_TORCH_INCREASE = gib(0.22)

# The activation peak formula (see planner.activation_peak) matched the warm and
# eager peaks within 5% (14B: 0.95 formula vs 0.90 warm / 0.98 eager; 7B: 1.09
# vs 1.06 warm). A cold first boot -- empty torch.compile cache, which is every
# boot of a fresh machine -- peaked 0.67 GiB higher on the 14B (1.61 GiB), so
# plans add this unless the model runs with enforce_eager.
COLD_COMPILE_EXTRA = gib(0.67)

# Per server, outside any fraction: the CUDA context (~618 MiB outside
# PyTorch's allocator) and cuBLAS (~160 MiB), docs/facts.md "~0.75 GiB that no
# fraction accounts for" ...
CUDA_CONTEXT = 618 * MiB + 160 * MiB
# ... and, in vLLM 0.26 with model runner V2, CUDA graphs: "Graph capturing
# finished ... took 0.16 GiB" (14B) / 0.14 GiB (7B), not taken from the KV
# budget (profile_cudagraph_memory() returns 0). Zero with enforce_eager.
CUDA_GRAPHS = gib(0.16)

# Resident after boot minus weights minus KV, per nvidia-smi -- what a server
# holds when the next one on its GPU takes vLLM's free-memory check. H100:
# 1.04, 0.99, 0.98, 1.17, 1.00 GiB. H200 (docs/h200-vllm-0.26.0.md, table
# (b)-(d)): warm 1.02 / 1.01 / 0.98 GiB (Qwen2.5-14B / Llama-3.1-8B /
# Qwen2.5-7B), but a cold first boot (torch.compile from nothing) keeps more,
# and more for a larger model: 1.59 and 1.67 GiB (14B, 27.57 GiB of weights),
# 1.04 and 1.19 (8B, 15.00), 1.03 and 1.17 (7B, 14.29). The largest warm
# figure (1.04) plus 2.4 % of the weights covers every run on both cards (14B
# 1.70, 8B 1.40, 7B 1.38 GiB) and wastes at most 0.66 GiB on them.
RESIDENT_BASE = gib(1.04)
RESIDENT_PER_WEIGHT = 0.024


def resident_overhead(weights_bytes: int) -> int:
    """What a booted server holds beyond its weights and KV cache."""
    return RESIDENT_BASE + math.ceil(weights_bytes * RESIDENT_PER_WEIGHT)


# vLLM's KV cache block size on CUDA (tokens per block): token counts in its
# log ("GPU KV cache size: 55,632 tokens") are multiples of it.
KV_BLOCK_TOKENS = 16

# Scheduler defaults written explicitly, because vLLM sizes its own defaults
# from the whole DEVICE, not the slice: on an H100 the API server gets
# max_num_seqs=1024, max_num_batched_tokens=8192 (docs/h100-vllm-0.26.0.md,
# "defaults seen"); on cards under
# 70 GiB it uses 2048 tokens. A slice is smaller than a card, so use 2048.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
# The H100 measurements ran --max-num-seqs 16; CUDA graph memory above was
# measured with capture sizes up to 2 x 16 = 32.
DEFAULT_MAX_NUM_SEQS = 16

# Fraction granularity: 1e-4 of an 80 GiB card is 8 MiB.
FRACTION_STEP = 1e-4

# Boot budget (compose healthcheck start_period): a cold 14B took 123 s with
# weights already on local disk (H100 report); downloading from the hub first
# costs about 15 s per GiB at ~70 MB/s. Rounded up to half minutes.
BOOT_BASE_S = 120
BOOT_S_PER_WEIGHT_GIB = 15
BOOT_ROUND_S = 30

# Logits in the sampler's dummy run are float32: max_num_seqs x vocab x 4 B.
SAMPLER_LOGIT_BYTES = 4

# A CUDA total below this is not a GPU vLLM can serve a model from.
MIN_GPU_BYTES = 1 * GiB

# Cold boot on the H100 (to /health 200): 123.1 s for the 14B shape (27.57 GiB
# of weights), 83.0 s for the 7B (14.29 GiB), weights on local disk. A line
# through both: ~55 s of imports, process spawn and compile, plus ~2.45 s per
# GiB of weights (14B: 55 + 2.45 x 27.6 = 122.6 s; 7B: 90 s, 7 s slow).
# Rehearsals replay these times, scaled down.
COLD_BOOT_BASE_S = 55.0
COLD_BOOT_S_PER_WEIGHT_GIB = 2.45

# `--kv-cache-memory-bytes` fixes the KV cache and skips vLLM's profiling
# (docs/facts.md, "vLLM"; used with vLLM 0.26.0 on the H100, where two servers booted
# together twice with it). vLLM 0.11.0 is the first release that has it;
# images whose tag names an older release get the fraction-only form.
KV_CACHE_BYTES_SINCE = (0, 11, 0)

# Tensor parallelism: NCCL communicators and vLLM's custom all-reduce buffers
# sit outside PyTorch's allocator on every card. Not measured here (the H100
# runs were single-card); NCCL's default buffers are 4 MiB per channel per peer
# (NCCL_BUFFSIZE) over up to 32 channels, plus the all-reduce IPC buffers: plan
# half a GiB per card, on the safe side.
TENSOR_PARALLEL_NON_TORCH = gib(0.5)


def requested_bytes(fraction: float, total: int) -> int:
    """What vLLM requests (and checks is free at start) for
    ``--gpu-memory-utilization fraction``: ``ceil(fraction x total)``
    (docs/facts.md, "vLLM"; vllm/v1/worker/utils.py)."""
    return math.ceil(fraction * total)


# --- sleep mode (swappable models), H200, vLLM 0.26.0 ------------------------
# docs/h200-sleep-vllm-0.26.0.md, "What this implies for planning".
#
# A sleeping server keeps 956-970 MiB of GPU memory per process at either
# level (nvidia-smi, E2/E4/E5), and a level-1 sleeper adds ~60-100 MiB the card
# reports but no process holds (E6, driver bookkeeping of the pinned host
# buffers). Plan 1.1 GiB per sleeper, both levels.
SLEEP_RESIDUE = gib(1.1)
# What the simulator's sleeper holds: the process figure seen (970 MiB).
SLEEPER_MEASURED = 970 * MiB

# Level 1 pins host memory for the weights at the first sleep and keeps it for
# the process's life, awake or asleep: +49.04 GiB RSS for 27.58 GiB of weights
# (14B, 1.78x) and +26.78 GiB for 14.36 GiB (7B, 1.87x) -- vLLM's pinned blocks,
# each rounded up to a power of two (the DEBUG allocation lines: 49.11 GiB
# after rounding for the 14B). Rounding to a power of two never doubles a
# block, so 2x the weights is the bound the plan holds the host to.
LEVEL1_HOST_PIN_FACTOR = 2.0

# After a level-2 wake and reload_weights the 14B held 1,506 MiB more than
# before its sleep (72,954 vs 71,468 MiB, E4, one sample), the 7B 1,040 MiB
# more in each of 18 cycles (docs/h200-swap-2026-12-02.md): plan 1.5 GiB on
# top of a level-2 server's awake figure.
LEVEL2_RELOAD_EXTRA = gib(1.5)
LEVEL2_RELOAD_EXTRA_MEASURED = 1506 * MiB

# Latencies (client clock, E2-E6), per GiB of weights where they scale:
# - the first level-1 sleep pins the host blocks: 42.9 s for 27.58 GiB (14B),
#   15.7 s for 14.30 GiB (7B); 34.8 s for the 14B in the swap run
#   (docs/h200-swap-2026-12-02.md); the first-sleep step gets 60 s + 4 s per GiB;
# - a later level-1 sleep 0.59-0.64 s (14B), 0.34 s (7B); wake 0.67-0.73 s
#   (14B), 0.46 s (7B);
# - level 2: sleep 0.05 s, wake 0.08 s, reload_weights 5.06 s (14B, weights
#   in the page cache).
FIRST_SLEEP_TIMEOUT_BASE_S = 60
FIRST_SLEEP_TIMEOUT_S_PER_GIB = 4
FIRST_SLEEP_S_PER_GIB = 1.56
LEVEL1_SLEEP_S_PER_GIB = 0.023
LEVEL1_WAKE_S_PER_GIB = 0.026
LEVEL2_SLEEP_S = 0.05
LEVEL2_WAKE_S = 0.08
LEVEL2_RELOAD_S_PER_GIB = 0.184


def pinned_host_bytes(weights_bytes: int) -> int:
    """Host RAM a level-1 sleeper pins, from its first sleep on."""
    return math.ceil(weights_bytes * LEVEL1_HOST_PIN_FACTOR)


def first_sleep_timeout_s(weights_bytes: int) -> int:
    return FIRST_SLEEP_TIMEOUT_BASE_S + math.ceil(FIRST_SLEEP_TIMEOUT_S_PER_GIB * weights_bytes / GiB)
