"""The rehearsal override: the rendered stack, minus the GPU.

A Compose override file (never a second renderer): model services keep their
command, healthcheck, depends_on chain and labels; only the image changes (the
simulator, later real vLLM's CPU build), GPU reservations are dropped, and the
simulator is told, through its environment, the GPU the plan describes. The
proxy keeps its image contract and config; its port becomes ephemeral unless
one is asked for, so a rehearsal never collides with a running stack.
"""

from __future__ import annotations

from gpustack_compose import calibration as cal
from gpustack_compose import versions
from gpustack_compose.contract import (
    GPU_EXPORTER_SERVICE,
    GRAFANA_SERVICE,
    PROXY_PORT,
    PROXY_SERVICE,
    SIM_VLLM_RELEASE_ENV,
    SWAP_SERVICE,
)
from gpustack_compose.planner import ModelPlan, Plan
from gpustack_compose.render import environment
from gpustack_compose.render_swap import first_sleep_steps
from gpustack_compose.spec import ModelSpec, StackSpec, model_image
from gpustack_compose.stand_in import DEFAULT_TIME_SCALE, RehearsalOptions
from gpustack_compose.units import GiB
from gpustack_compose.vllm_args import TINY_FAMILIES, cpu_adaptation, model_mount, serve_args

# KV cache of a vLLM CPU server, in GiB (VLLM_CPU_KVCACHE_SPACE): the tiny
# stand-ins need 512 bytes per token, so 1 GiB holds two million tokens.
CPU_KV_SPACE_GIB = "1"

LEDGER_DIR = "/var/lib/gpustack-sim"


def cold_boot_s(model: ModelPlan) -> float:
    """Seconds a cold boot of this model takes on an H100 (see calibration)."""
    return cal.COLD_BOOT_BASE_S + cal.COLD_BOOT_S_PER_WEIGHT_GIB * model.weights_bytes / GiB


def load_seconds(model: ModelPlan, options: RehearsalOptions) -> float:
    if options.load_s is not None:
        return options.load_s
    return round(cold_boot_s(model) * options.time_scale, 2)


def sim_environment(stack: StackSpec, plan: Plan, model: ModelPlan, options: RehearsalOptions) -> dict[str, str]:
    gpu = plan.gpu(model.gpu)  # a tensor-parallel model's cards are identical
    values = {
        "GSC_SIM_GPU": model.gpu_label,
        "GSC_SIM_GPU_TOTAL_BYTES": str(gpu.total_bytes),
        "GSC_SIM_GPU_RESERVE_BYTES": str(gpu.reserve_bytes),
        # LoRA slots are allocated with the weights ("Model loading took" includes them) and
        # stay resident, as measured on the H200 (docs/h200-truth-2026-12-02.md)
        "GSC_SIM_WEIGHTS_BYTES": str(model.weights_bytes + model.lora_bytes),
        "GSC_SIM_PROFILE_BYTES": str(model.activation_bytes + model.non_torch_bytes),
        "GSC_SIM_CONTEXT_BYTES": str(cal.CUDA_CONTEXT),
        # the planner's residency: what it holds once up beyond weights, LoRA and KV
        "GSC_SIM_OVERHEAD_BYTES": str(
            model.resident_bytes - model.weights_bytes - model.lora_bytes - (0 if model.elastic else model.kv_bytes)
        ),
        "GSC_SIM_KV_BYTES_PER_TOKEN": str(model.kv_bytes_per_token),
        "GSC_SIM_LOAD_S": f"{load_seconds(model, options):g}",
        "GSC_SIM_INSTANCE": model.service,
        # the flags the simulator accepts: those of the release production runs
        SIM_VLLM_RELEASE_ENV: versions.image_vllm_release(production_image(stack, model)) or versions.VLLM,
    }
    if options.ledger:
        values["GSC_SIM_LEDGER_DIR"] = LEDGER_DIR
    if model.swappable:
        values.update(sleep_environment(model, options))
    # What the stack file itself sets for a model wins (a test or a user
    # pinning a load time or a failure mode).
    own = _spec(stack, model).env
    return {k: v for k, v in values.items() if k not in own}


def sleep_environment(model: ModelPlan, options: RehearsalOptions) -> dict[str, str]:
    """The simulator's sleep mode, at the H200's measured figures
    (calibration): sleeps and wakes as measured, the first sleep and a level-2
    reload (seconds to a minute) at the rehearsal's time scale, like boots."""
    weights_gib = model.weights_bytes / GiB
    scale = options.time_scale if options.load_s is None else DEFAULT_TIME_SCALE
    return {
        "GSC_SIM_SLEEPER_BYTES": str(cal.SLEEPER_MEASURED),
        "GSC_SIM_FIRST_SLEEP_S": f"{round(cal.FIRST_SLEEP_S_PER_GIB * weights_gib * scale, 2):g}",
        "GSC_SIM_SLEEP_S": f"{round(cal.LEVEL1_SLEEP_S_PER_GIB * weights_gib, 3):g}",
        "GSC_SIM_WAKE_S": f"{round(cal.LEVEL1_WAKE_S_PER_GIB * weights_gib, 3):g}",
        "GSC_SIM_RELOAD_S": f"{round(cal.LEVEL2_RELOAD_S_PER_GIB * weights_gib * scale, 2):g}",
        "GSC_SIM_RELOAD_EXTRA_BYTES": str(cal.LEVEL2_RELOAD_EXTRA_MEASURED),
    }


def _spec(stack: StackSpec, model: ModelPlan) -> ModelSpec:
    return next(m for m in stack.models if m.name == model.name)


def production_image(stack: StackSpec, model: ModelPlan) -> str:
    return model_image(stack, _spec(stack, model), elastic=model.elastic)


def tiny_family(model: ModelPlan) -> str:
    return model.family if model.family in TINY_FAMILIES else "llama"


def cpu_environment(model: ModelPlan) -> dict[str, str]:
    return {
        "GSC_TINY_FAMILY": tiny_family(model),
        "GSC_TINY_CONTEXT": str(model.max_model_len),
        "VLLM_CPU_KVCACHE_SPACE": CPU_KV_SPACE_GIB,
    }


def differences(stack: StackSpec, plan: Plan, options: RehearsalOptions) -> dict[str, list[str]]:
    """What a model service runs differently from production, per service: the
    one place the rehearsal's departures from the rendered stack are decided."""
    out: dict[str, list[str]] = {}
    for model in plan.models:
        if options.stand_in == "simulator":
            out[model.service] = ["vLLM replaced by the gpustack-compose simulator (same command line)"]
            continue
        adapted = cpu_adaptation(serve_args(_spec(stack, model), model), options.cpu_flags)
        notes = [f"weights: a tiny random-weight {tiny_family(model)} stand-in (vLLM's CPU build, no GPU)"]
        if tiny_family(model) != model.family:
            notes.append(f"no tiny {model.family} stand-in: the llama one serves in its place")
        if model.elastic:
            notes.append("kvcached is not part of vLLM's CPU build: a static KV cache, no kvctl caps")
        out[model.service] = notes + adapted.differences
    return out


def override(stack: StackSpec, plan: Plan, options: RehearsalOptions) -> str:
    services = []
    for m in plan.boot_ordered():
        command: list[str] | None = None
        if options.stand_in == "vllm-cpu":
            env = cpu_environment(m)
            adapted = cpu_adaptation(serve_args(_spec(stack, m), m), options.cpu_flags)
            command = adapted.args if adapted.differences else None
        else:
            env = sim_environment(stack, plan, m, options)
        services.append(
            {
                "service": m.service,
                "image": options.model_image,
                "env": sorted(env.items()),
                "ledger": options.ledger and options.stand_in == "simulator",
                # a model directory of the host: an empty writable tmpfs in its place (Compose merges
                # volumes by target), where the CPU build's stand-in is written and no host folder is needed
                "model_mount": model_mount(_spec(stack, m)),
                "command": command,
            }
        )
    swap = [{"service": step["service"]} for step in first_sleep_steps(plan)]
    context = {
        "stack": stack,
        "services": services,
        "swap": bool(swap),
        "first_sleeps": swap,
        "swap_service": SWAP_SERVICE,
        "swap_image": options.swap_image,
        "swap_env": [("GSC_SWAP_LEDGER_DIR", LEDGER_DIR), ("GSC_SWAP_MEMORY", "ledger")],
        "ledger_dir": LEDGER_DIR,
        "proxy_service": PROXY_SERVICE,
        "proxy_image": options.proxy_image,
        "proxy_target_port": PROXY_PORT,
        "proxy_published": str(options.proxy_port) if options.proxy_port else "",
        "proxy_host": options.proxy_host,
        "proxy_port_label": str(options.proxy_port) if options.proxy_port else "an ephemeral port",
        "monitoring": stack.monitoring.enabled,
        "monitoring_off": [GRAFANA_SERVICE, *([GPU_EXPORTER_SERVICE] if stack.monitoring.gpu_exporter else [])],
        "engine_label": "real vLLM (CPU build) with tiny stand-in models"
        if options.stand_in == "vllm-cpu"
        else "the gpustack-compose vLLM simulator",
    }
    return environment().get_template("rehearsal-override.yml.j2").render(context)
