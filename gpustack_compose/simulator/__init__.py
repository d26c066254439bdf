"""A stand-in for ``vllm serve`` for machines without a GPU.

Standard library only (it runs in a plain Debian image). Seen from outside it
behaves like vLLM's OpenAI server: it accepts the same command line (unknown
flags are an error), keeps its port closed while "loading", answers /health,
/v1/models (base model and LoRA adapters), /v1/chat/completions and
/v1/completions, and plays the GPU through a ledger file shared by the servers
of one GPU: at start it refuses, with vLLM's own error text, when the free
memory is below ``--gpu-memory-utilization x total``, exactly as vLLM V1 does.

Boot follows vLLM's phases on the load clock: the startup snapshot and check
(30 %), weights loading into the ledger (30-45 %), the profile run (50 %),
the KV cache (55 %), the port opening (100 %). Without
``--kv-cache-memory-bytes`` the KV cache is vLLM's formula, share - weights -
profile - the growth of everybody else's memory since the snapshot: servers
starting together charge each other's loading to themselves (negative KV:
"No available memory for the cache blocks"; memory released meanwhile: too
much KV). With ``--kv-cache-memory-bytes`` the size is fixed and the race is
gone, as measured on the H100.

Settings that a real server would get from its GPU come from the environment
(the rehearsal override sets them from the plan), so the command line stays
exactly what the renderer produced:

    GSC_SIM_LOAD_S              seconds to "load" before the port opens (default 2)
    GSC_SIM_GPU                 GPU index (ledger file name), or indexes "4,5" for a
                                tensor-parallel server: the same claims on every card (default 0)
    GSC_SIM_GPU_TOTAL_BYTES     what CUDA would report as total     (default H100: 85017493504)
    GSC_SIM_GPU_RESERVE_BYTES   memory never free on that GPU       (default 0.52 GiB)
    GSC_SIM_WEIGHTS_BYTES       weights it loads                    (default 60% of its share)
    GSC_SIM_PROFILE_BYTES       activation peak + non-torch (+ LoRA slots) of vLLM's profile run
    GSC_SIM_CONTEXT_BYTES       CUDA context, held from the start   (default 778 MiB)
    GSC_SIM_OVERHEAD_BYTES      resident - weights - KV once up     (default 1.2 GiB)
    GSC_SIM_KV_BYTES_PER_TOKEN  for the "GPU KV cache size" line     (default 0: not printed)
    GSC_SIM_LEDGER_DIR          shared folder of ledgers; unset = no GPU accounting
    GSC_SIM_INSTANCE            identity in the ledger              (default hostname)
    GSC_SIM_FAIL                "" | crash (exit 1 once loaded) | hang (never opens its port)
                                | unhealthy (/health answers 503)
                                | wake-once (the first /wake_up of the process fails as a wake into
                                  too little memory does: HTTP 500, stuck for good)
"""
