"""Planner arithmetic, by hand, and against the H100 measurements."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gpustack_compose import calibration as cal
from gpustack_compose.catalog import find_gpu, find_model
from gpustack_compose.errors import PlanError
from gpustack_compose.loader import parse_yaml, validate_stack
from gpustack_compose.model_facts.params import linear_params, total_params
from gpustack_compose.planner import Plan, lora_slot_bytes, plan_stack
from gpustack_compose.spec import StackSpec
from gpustack_compose.units import GiB, gib

GIB_F = float(GiB)


def plan_of(text: str) -> Plan:
    return plan_stack(validate_stack(parse_yaml(text, "stack.yaml"), "stack.yaml"))


TINY = """
name: t
gpus:
  - {index: 0, memory_gib: 10, reserve_gib: 0.5}
models:
  - name: tiny
    model: /models/tiny
    memory: 0.5
    max_model_len: 4096
    enforce_eager: true
    arch: {params_b: 1.0, hidden_size: 1024, intermediate_size: 4096, num_layers: 10,
           num_kv_heads: 2, num_attention_heads: 16, head_dim: 64, context_length: 4096,
           vocab_size: 32000}
"""


def test_single_model_arithmetic_by_hand() -> None:
    m = plan_of(TINY).model("tiny")
    total = 10 * 1024**3  # 10,737,418,240 B
    # weights: 1e9 params x 2 B (bf16) + 0.11 GiB of buffers
    assert m.weights_bytes == 2_000_000_000 + round(0.11 * 1024**3) == 2_118_111_601
    # activation peak, eager (no cold-compile extra): 2048 tokens x (3 x 4096 + 4 x 1024) x 2 B
    # + sampler logits 16 seqs x 32000 vocab x 4 B
    assert m.activation_bytes == 2048 * 16384 * 2 + 16 * 32000 * 4 == 69_156_864
    assert m.non_torch_bytes == round(0.22 * 1024**3) == 236_223_201
    # share = ceil(0.5 x total); room for KV = share - weights - activations - non-torch
    assert m.share_bytes == 5_368_709_120
    room = 5_368_709_120 - 2_118_111_601 - 69_156_864 - 236_223_201
    assert room == 2_945_217_454
    # KV per token = 2 x 10 layers x 2 kv heads x 64 head dim x 2 B = 5120 B; 16-token blocks
    assert m.kv_bytes_per_token == 5120
    assert m.kv_tokens == room // (16 * 5120) * 16 == 575_232
    # exact KV (--kv-cache-memory-bytes, vLLM 0.26 image) is rendered in whole blocks
    assert m.exact_kv
    assert m.kv_bytes == 575_232 * 5120 == 2_945_187_840
    assert m.max_concurrency == pytest.approx(575_232 / 4096)  # 140.44 sequences of 4096
    # Under load: share + CUDA context and cuBLAS (778 MiB); no CUDA graphs when eager
    assert m.peak_bytes == 5_368_709_120 + 778 * 1024**2
    # vLLM's startup check sees everything but the reserve free
    assert m.free_at_start_bytes == total - gib(0.5)
    # min fraction holds max_num_seqs (16) full-length sequences: non-KV + 16 x 4096 tokens
    need = 2_118_111_601 + 69_156_864 + 236_223_201 + 16 * 4096 * 5120
    assert m.min_fraction == pytest.approx(math.ceil(need / total / 1e-4) * 1e-4)


def test_h100_measurements_two_models_sequential() -> None:
    """Exp 1 of the H100 report: A (14B shape) at 0.5 then B (7B shape) at 0.3,
    max-model-len 8192, max-num-seqs 16, max-num-batched-tokens 8192, cold."""
    plan = plan_of(
        """
name: exp1
gpus: [{index: 0, type: H100-80GB}]
models:
  - {name: a, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.5, max_model_len: 8192,
     max_num_seqs: 16, max_num_batched_tokens: 8192}
  - {name: b, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.3, max_model_len: 8192,
     max_num_seqs: 16, max_num_batched_tokens: 8192}
"""
    )
    a, b = plan.model("a"), plan.model("b")
    assert plan.gpus[0].total_bytes == 85_017_493_504  # 79.18 GiB, CUDA's total
    # "Model loading took 27.57 GiB" / "14.29 GiB"
    assert a.weights_bytes / GIB_F == pytest.approx(27.57, abs=0.1)
    assert b.weights_bytes / GIB_F == pytest.approx(14.29, abs=0.1)
    # "torch peak activation increase": 1.61 GiB cold (A); B's 1.13 is over-planned (safe)
    assert a.activation_bytes / GIB_F == pytest.approx(1.61, abs=0.05)
    assert b.activation_bytes / GIB_F >= 1.13
    # "Available KV cache memory: 10.19 GiB" / "GPU KV cache size: 55,632 tokens"
    assert a.kv_bytes / GIB_F == pytest.approx(10.19, abs=0.1)
    assert a.kv_tokens == pytest.approx(55_632, rel=0.01)
    assert a.max_concurrency == pytest.approx(6.79, abs=0.05)
    # B measured 8.11 GiB; the plan may only be lower (the safe side)
    assert 7.0 < b.kv_bytes / GIB_F <= 8.11
    # B's startup snapshot saw 39.86 GiB free: the plan is below it, by less than 0.8 GiB (it
    # also covers the H200's cold boots, which kept more: calibration.resident_overhead)
    assert 39.86 - 0.8 < b.free_at_start_bytes / GIB_F <= 39.86
    # nvidia-smi showed A at 38.80 GiB resident: the plan holds at least that
    assert 38.80 <= a.resident_bytes / GIB_F < 38.80 + 0.8


def test_oversubscribed_split_is_refused_with_the_numbers() -> None:
    """Exp 3a (A at 0.6, then B at 0.5): vLLM refused B after ~45-50 s of boot;
    the planner refuses it before anything starts."""
    with pytest.raises(PlanError) as error:
        plan_of(
            """
name: exp3a
gpus: [{index: 0, type: H100-80GB}]
models:
  - {name: a, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.6, max_model_len: 8192}
  - {name: b, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.5, max_model_len: 8192}
"""
        )
    assert str(error.value) == (
        "gpus[0]: GPU 0 (H100-80GB, 79.18 GiB as CUDA reports it): the fractions sum to 1.1 (a 0.6 + b 0.5) = "
        "87.10 GiB; "
        "with the 0.52 GiB reserve that is 8.44 GiB more than the card holds. At most 0.9934 can be shared out "
        "on this GPU"
    )


def test_fraction_too_small_for_one_sequence() -> None:
    with pytest.raises(PlanError) as error:
        plan_of(
            """
name: small
gpus: [{index: 0, type: H100-80GB}]
models:
  - {name: qwen, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.38}
"""
        )
    # 0.38 x 79.18 = 30.09 GiB share. Activation peak at 2048 batched tokens:
    # 2048 x (3 x 13824 + 4 x 5120) x 2 B = 0.236 GiB + sampler 16 x 152064 x 4 B = 0.009 GiB
    # + 0.67 GiB cold compile = 0.92 GiB. KV left: 30.09 - 27.62 - 0.92 - 0.22 = 1.33 GiB
    # = 7264 tokens of 192 KiB; one 32768-token request needs 6.00 GiB.
    # min fraction: (27.62 + 0.92 + 0.22 + 6.00) / 79.18 = 0.4390.
    assert str(error.value) == (
        "models[0].memory: 'qwen' on GPU 0: to serve one request of max_model_len 32768, 6.00 GiB of KV cache is "
        "needed, but fraction 0.38 leaves 1.33 GiB (30.09 GiB share - 27.62 GiB weights - 0.92 GiB activation "
        "peak - 0.22 GiB non-torch); raise memory to at least 0.439 or lower max_model_len to 7264"
    )


def test_boot_time_rule_uses_what_earlier_servers_hold() -> None:
    # 10 GiB card, no reserve: tiny eager models whose resident (weights + KV + 1.2 GiB
    # overhead) exceeds their share, so the second one's start finds too little free.
    text = TINY.replace("reserve_gib: 0.5", "reserve_gib: 0").replace("memory: 0.5", "memory: 0.45")
    text += """
  - name: tiny2
    model: /models/tiny
    memory: 0.5
    max_model_len: 4096
    enforce_eager: true
    arch: {params_b: 1.0, hidden_size: 1024, intermediate_size: 4096, num_layers: 10,
           num_kv_heads: 2, num_attention_heads: 16, head_dim: 64, context_length: 4096,
           vocab_size: 32000}
"""
    with pytest.raises(PlanError) as error:
        plan_of(text)
    # tiny holds weights 1.9726 + KV (4.5 - 1.9726 - 0.0644 - 0.22 = 2.2430) + 1.2 overhead = 5.4156 GiB,
    # so 10 - 5.4156 = 4.58 GiB are free when tiny2 asks for 0.5 x 10 = 5.00 GiB.
    assert str(error.value) == (
        "models[1].memory: GPU 0 (10 GiB): when tiny2 (boot position 2) starts, vLLM needs 0.5 x 10.00 GiB = "
        "5.00 GiB free, "
        "but only 4.74 GiB will be (10.00 GiB - 0.00 GiB reserve - 5.26 GiB held by tiny); lower a fraction"
    )


def test_under_load_the_overheads_outside_fractions_count() -> None:
    with pytest.raises(PlanError) as error:
        plan_of(
            """
name: load
gpus: [{index: 0, type: H100-80GB}]
models:
  - {name: a, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.5, max_model_len: 8192}
  - {name: b, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.485, max_model_len: 8192}
"""
        )
    # shares 39.59 + 38.40 + reserve 0.52 = 78.51 GiB fit; + 2 x 0.92 GiB outside = 80.35 GiB do not.
    # vLLM's own startup check would pass (39.01 GiB free for b's 38.40 GiB): only load overflows.
    assert str(error.value) == (
        "gpus[0]: GPU 0 (H100-80GB): the fractions fit, but under load the servers also hold 1.84 GiB outside their "
        "fractions (CUDA context, cuBLAS and CUDA graphs, ~0.92 GiB each): 80.35 GiB against 79.18 GiB; "
        "lower the fractions by 0.0149 in all"
    )


def test_size_request_rounds_up_to_a_fraction() -> None:
    plan = plan_of(TINY.replace("memory: 0.5", "memory: 4GiB"))
    # 4 GiB of 10 GiB = 0.4 exactly
    assert plan.model("tiny").fraction == pytest.approx(0.4)
    plan = plan_of(TINY.replace("memory: 0.5", "memory: 3000MB"))
    # 3e9 / 10,737,418,240 = 0.27939... -> rounded up to 0.2794 so the model gets at least 3000 MB
    assert plan.model("tiny").fraction == pytest.approx(0.2794)
    assert plan.model("tiny").share_bytes >= 3_000_000_000


AUTO = """
name: auto
gpus: [{index: 0, type: L40S}]
models:
  - {name: llama, model: meta-llama/Llama-3.1-8B-Instruct, max_model_len: 8192, max_num_seqs: 4}
  - {name: qwen, model: Qwen/Qwen3-4B, max_model_len: 8192, max_num_seqs: 4}
  - {name: fixed, model: google/gemma-3-1b-it, memory: 0.1, max_model_len: 8192}
"""


def test_auto_gives_each_its_need_then_shares_the_rest_equally() -> None:
    plan = plan_of(AUTO)
    gpu = plan.gpus[0]
    llama, qwen, fixed = plan.model("llama"), plan.model("qwen"), plan.model("fixed")
    assert fixed.fraction == 0.1 and fixed.fraction_source == "fraction"
    assert llama.fraction_source == qwen.fraction_source == "auto"
    # each auto model holds its 4 full-length sequences
    assert llama.kv_tokens >= 4 * 8192 and qwen.kv_tokens >= 4 * 8192
    # the surplus beyond each need is the same for both (to one fraction step)
    extra_llama = llama.share_bytes - (llama.non_kv_bytes + 4 * 8192 * llama.kv_bytes_per_token)
    extra_qwen = qwen.share_bytes - (qwen.non_kv_bytes + 4 * 8192 * qwen.kv_bytes_per_token)
    assert abs(extra_llama - extra_qwen) <= 2 * cal.FRACTION_STEP * gpu.total_bytes
    # and the card is used up to within two fraction steps, without overflow
    assert 0 <= gpu.free_bytes <= 3 * cal.FRACTION_STEP * gpu.total_bytes


def test_auto_when_the_card_cannot_hold_every_need() -> None:
    text = AUTO.replace("max_num_seqs: 4}", "max_num_seqs: 64}")
    plan = plan_of(text)
    llama, qwen = plan.model("llama"), plan.model("qwen")
    # each gets one full sequence plus the same proportion of what it wanted beyond that
    assert llama.kv_tokens >= 8192 and qwen.kv_tokens >= 8192
    assert llama.kv_tokens < 64 * 8192 and qwen.kv_tokens < 64 * 8192
    share_llama = (llama.kv_tokens - 8192) / (63 * 8192)
    share_qwen = (qwen.kv_tokens - 8192) / (63 * 8192)
    assert share_llama == pytest.approx(share_qwen, abs=0.01)


def test_auto_models_that_cannot_fit_at_all() -> None:
    with pytest.raises(PlanError, match=r"^gpus\[0\]: GPU 0 \(L4\): the auto models need at least 29\.\d\d GiB"):
        plan_of(
            """
name: nope
gpus: [{index: 0, type: L4}]
models:
  - {name: big, model: Qwen/Qwen2.5-14B-Instruct, max_model_len: 4096}
"""
        )


def test_lora_slot_memory_on_two_architectures() -> None:
    """max_loras x max_rank x (in + out) per wrapped layer, summed, in bf16."""
    qwen14 = find_model("Qwen/Qwen2.5-14B-Instruct")
    llama8 = find_model("meta-llama/Llama-3.1-8B-Instruct")
    assert qwen14 is not None and llama8 is not None
    # Qwen2.5-14B: H 5120, q 40x128 = 5120, kv 8x128 = 1024, I 13824, 48 layers
    # per layer in+out: 7x5120 + 2x5120 + 2x1024 + 3x13824 = 89,600; the embedding and the
    # LM head: 2 x (vocab 152,064 + 5,120)
    vocabulary = 2 * (152_064 + 5120)
    assert lora_slot_bytes(qwen14[0].facts, 4, 16, 2) == (48 * 89_600 + vocabulary) * 4 * 16 * 2 == 590_741_504
    # Llama-3.1-8B: H 4096, q 4096, kv 1024, I 14336, 32 layers
    # per layer: 7x4096 + 2x4096 + 2x1024 + 3x14336 = 81,920
    vocabulary = 2 * (128_256 + 4096)
    assert lora_slot_bytes(llama8[0].facts, 2, 8, 2) == (32 * 81_920 + vocabulary) * 2 * 8 * 2
    # the H200 run: 4 slots of rank 16 took 0.36 +- 0.01 GiB ("Model loading took" 15.36 vs 15.00 GiB)
    assert lora_slot_bytes(llama8[0].facts, 4, 16, 2) / GIB_F == pytest.approx(0.36, rel=0.05)


def test_catalog_parameter_counts_match_published_sizes() -> None:
    expected = {
        "Qwen/Qwen2.5-14B-Instruct": 14.770,  # the H100 report: 14.770 B
        "Qwen/Qwen2.5-7B-Instruct": 7.616,  # 7.616 B
        "meta-llama/Llama-3.1-8B-Instruct": 8.03,
        "mistralai/Mistral-Small-24B-Instruct-2501": 23.57,
        "google/gemma-2-9b-it": 9.24,
        "Qwen/Qwen3-8B": 8.19,
    }
    for repo, billions in expected.items():
        found = find_model(repo)
        assert found is not None
        assert total_params(found[0].facts) / 1e9 == pytest.approx(billions, abs=0.01), repo


def test_gpu_catalog_uses_cuda_totals() -> None:
    h100 = find_gpu("h100-80gb")
    l40s = find_gpu("L40S")
    assert h100 is not None and l40s is not None
    assert h100.cuda_total_bytes == 85_017_493_504
    # nvidia-smi 46068 MiB - 480 MiB; vLLM logged total_gpu_memory 44.52 GiB on an L40S
    assert l40s.cuda_total_bytes / GIB_F == pytest.approx(44.52, abs=0.005)
    for name in ("H100-NVL", "H200", "A100-40GB", "A100-80GB", "L4", "A10", "RTX-4090", "RTX-6000-Ada", "RTX-PRO-6000"):
        assert find_gpu(name) is not None, name


def test_quantized_checkpoint_name_implies_its_quantization() -> None:
    plan = plan_of(
        """
name: q
gpus: [{index: 0, type: L4}]
models:
  - {name: q7, model: Qwen/Qwen2.5-7B-Instruct-AWQ, memory: 0.9, max_model_len: 8192}
"""
    )
    m = plan.model("q7")
    assert m.quantization == "awq"
    # the decoder's linear layers at ~4.16 bits; embeddings, LM head and norms stay 16-bit
    # (2 x 152064 x 3584 x 2 B = 2.03 GiB of embeddings)
    arch = find_model("Qwen/Qwen2.5-7B-Instruct")
    assert arch is not None
    quantized = linear_params(arch[0].facts)
    kept = total_params(arch[0].facts) - quantized
    assert kept > 2 * 152064 * 3584
    assert m.weights_bytes == math.ceil(quantized * (4 + 20 / 128) / 8) + kept * 2 + cal.WEIGHTS_LOAD_OVERHEAD


def test_committed_examples_plan() -> None:
    from gpustack_compose.loader import load_stack

    for stack_file in sorted((Path(__file__).parent.parent / "stacks").glob("*.yaml")):
        plan = plan_stack(load_stack(stack_file))
        assert plan.models, stack_file


PARALLEL = """
name: par
gpus: [{index: 0, type: H100-80GB, boot: parallel}]
models:
  - {name: a, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.5, max_model_len: 8192}
  - {name: b, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.3, max_model_len: 8192}
"""


def test_parallel_boot_starts_everyone_together_with_exact_kv() -> None:
    plan = plan_of(PARALLEL)
    a, b = plan.model("a"), plan.model("b")
    assert plan.gpus[0].boot == "parallel"
    assert (a.boot_position, a.after, b.boot_position, b.after) == (1, (), 1, ())
    assert a.exact_kv and b.exact_kv
    # worst interleaving: b snapshots when a already holds share + outside (39.59 + 0.92 GiB)
    assert b.free_at_start_bytes == plan.gpus[0].total_bytes - plan.gpus[0].reserve_bytes - a.peak_bytes


def test_parallel_boot_refuses_profiled_kv() -> None:
    text = PARALLEL.replace(
        "max_model_len: 8192}\n  - {name: b", "max_model_len: 8192, kv_cache: profiled}\n  - {name: b"
    )
    with pytest.raises(PlanError) as error:
        plan_of(text)
    assert str(error.value) == (
        "gpus[0]: GPU 0 (H100-80GB) boots in parallel, which needs an exact KV size for every model: servers that "
        "profile "
        "together charge each other's memory to themselves (one dies with negative KV or another takes too much). "
        "a: kv_cache: profiled -- vLLM sizes the KV cache from its own profiling run at boot. Use kv_cache: exact "
        "with vLLM 0.11+, or boot: sequential"
    )


def test_parallel_boot_needs_room_for_everyone_at_once() -> None:
    # 0.5 + 0.485 + the 0.52 GiB reserve fit by fractions (78.51 GiB), but booting together
    # both hold their shares plus 0.92 GiB each outside them: 79.51 + ... = 80.35 GiB.
    with pytest.raises(PlanError) as error:
        plan_of(PARALLEL.replace("Qwen/Qwen2.5-7B-Instruct, memory: 0.3", "Qwen/Qwen2.5-14B-Instruct, memory: 0.485"))
    assert str(error.value) == (
        "gpus[0]: GPU 0 (H100-80GB): boot: parallel needs room for every server's weights, KV cache and activation "
        "peak "
        "at the same time: 80.35 GiB with the reserve and CUDA contexts, 1.17 GiB more than the card's 79.18 GiB; "
        "lower the fractions or boot: sequential"
    )


def test_old_vllm_images_get_the_fraction_only_form() -> None:
    from gpustack_compose.versions import image_vllm_version

    assert image_vllm_version("vllm/vllm-openai:v0.26.0") == (0, 26, 0)
    assert image_vllm_version("registry:5000/vllm/vllm-openai:0.10.1.1") == (0, 10, 1)
    assert image_vllm_version("vllm/vllm-openai:latest") is None
    assert image_vllm_version("vllm/vllm-openai@sha256:abc") is None
    plan = plan_of(
        PARALLEL.replace(", boot: parallel", "").replace(
            "memory: 0.3,", "memory: 0.3, image: vllm/vllm-openai:v0.10.2,"
        )
    )
    b = plan.model("b")
    assert not b.exact_kv
    assert b.kv_note == (
        "vllm/vllm-openai:v0.10.2 is vLLM 0.10.2, older than 0.11.0 which introduced --kv-cache-memory-bytes: "
        "the KV size comes from vLLM's profiling and depends on boot timing"
    )
    latest = plan_of(
        PARALLEL.replace(", boot: parallel", "").replace("memory: 0.3,", "memory: 0.3, image: vllm/vllm-openai:latest,")
    )
    assert latest.model("b").exact_kv
    assert (
        latest.model("b").kv_note
        == "the vLLM release of vllm/vllm-openai:latest is not in its tag: assumed 0.11.0 or newer"
    )


@pytest.mark.parametrize(
    ("gpu", "model", "max_model_len", "hint"),
    [
        # weights alone exceed the card: no fraction or length helps
        ("H100-80GB", "meta-llama/Llama-3.3-70B-Instruct", 8192,
         "; the H100-80GB cannot hold it even at memory 0.9934: use tensor parallelism (gpu: [i, j, ...]), "
         "a larger GPU or a quantized model"),
        # no fraction below 1 holds one sequence: only a shorter max_model_len does
        ("L4", "meta-llama/Llama-3.1-8B-Instruct", 131072,
         "; lower max_model_len to 38752 (even memory 0.9763, the most this GPU can share out, is too little)"),
    ],
)  # fmt: skip
def test_a_refusal_never_hints_at_a_fraction_the_card_cannot_give(
    gpu: str, model: str, max_model_len: int, hint: str
) -> None:
    """Issue 16 item 5: "raise memory to at least 2.9254" was a hint no stack could follow."""
    stack = StackSpec.model_validate(
        {"name": "x", "gpus": [{"index": 0, "type": gpu}],
         "models": [{"name": "a", "model": model, "memory": 0.95, "max_model_len": max_model_len}]}
    )  # fmt: skip
    with pytest.raises(PlanError) as raised:
        plan_stack(stack)
    assert raised.value.message.endswith(hint), raised.value.message
    assert "raise memory" not in raised.value.message
