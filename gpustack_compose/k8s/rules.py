"""What a stack must satisfy to render for Kubernetes, beyond fitting its GPUs.

How a cluster shares one GPU between pods decides what the render can promise:

- NVIDIA device-plugin time-slicing advertises each card as N replicas of an
  extended resource; a pod asking for one replica gets *some* card of the
  node, and a pod asking for two may get two replicas of the same card. So a
  planned GPU must be a node of its own (``kubernetes.nodes``) when the stack
  has several, and tensor parallelism cannot be expressed. Nothing limits a
  pod's memory: the planned fractions are what keeps the servers apart, as
  with Compose.
- HAMi gives each container a hard memory share (``nvidia.com/gpumem-percentage``)
  and makes CUDA report that share as the device's total (HAMi README: a pod
  with ``gpumem: 3000`` "will see 3G device memory inside container"). vLLM's
  ``--gpu-memory-utilization`` would then be a fraction of the share, so only
  models whose KV cache is fixed in bytes (``--kv-cache-memory-bytes``) keep
  their planned capacity; the fraction still passes vLLM's startup check.
"""

from __future__ import annotations

import math

from gpustack_compose.errors import SpecError
from gpustack_compose.planner import ModelPlan, Plan
from gpustack_compose.spec import DNS_LABEL, StackSpec, model_directory
from gpustack_compose.units import MiB

HAMI_MEMORY_PERCENT = "nvidia.com/gpumem-percentage"
HAMI_MEMORY_MIB = "nvidia.com/gpumem"


def _fail(path: tuple[str | int, ...], message: str) -> SpecError:
    return SpecError(message, path=path)


def hami_memory(plan: Plan, model: ModelPlan, unit: str) -> int:
    """HAMi memory share of each of the model's cards: its peak (the planned
    share plus the CUDA context and graphs outside it), rounded up to whole MiB
    (``mib``) or whole percent (``percent``). Percent of CUDA's total, which is
    a little below NVML's total that HAMi divides (79.18 vs 79.65 GiB on an
    H100, docs/facts.md): the share is a hair larger than needed, never smaller."""
    worst = 0
    for index in model.gpus:
        card = plan.gpu(index)
        per_card = next(m for m in card.models if m.name == model.name)
        if unit == "mib":
            worst = max(worst, math.ceil(per_card.peak_bytes / MiB))
        else:
            worst = max(worst, math.ceil(100 * per_card.peak_bytes / card.total_bytes))
    return worst


def check_kubernetes(stack: StackSpec, plan: Plan) -> None:
    """Raises SpecError naming the field when the stack cannot keep its
    guarantees on the cluster the ``kubernetes:`` block describes."""
    kube = stack.kubernetes
    for position, card in enumerate(stack.cards):
        if card.memory_mode == "elastic":
            raise _fail(
                ("gpus", position, "memory_mode"),
                f"GPU {card.index} is elastic: kvcached's servers share one IPC namespace and /dev/shm, which "
                "separate pods do not; the Kubernetes target renders static GPUs only",
            )
    declared = {card.index for card in stack.cards}
    used = sorted({i for m in plan.models for i in m.gpus})
    for field in ("nodes", "gpu_uuids"):
        for index in getattr(kube, field):
            if index not in declared:
                raise _fail(("kubernetes", field, index), f"GPU {index} is not declared in gpus")
    for model in plan.models:
        if not DNS_LABEL.fullmatch(model.service):
            raise _fail(
                ("models", model.stack_index, "name"),
                f"{model.name!r} would be the Kubernetes Service {model.service!r}, which is not a DNS-1035 "
                "label (it must start with a letter); rename the model",
            )
    if kube.gpu_sharing == "time-slicing":
        _check_time_slicing(stack, plan, used)
    for model in plan.models:
        _check_model_cards(stack, model)
    if kube.gpu_sharing == "hami":
        _check_hami(plan, kube.hami_memory)
    for position, spec in enumerate(stack.models):
        if spec.sleep is not None:
            raise _fail(
                ("models", position, "sleep"),
                "swap sets are rendered for Docker Compose only: the coordinator restarts a server a failed wake "
                "left stuck through the engine, and pods have no such peer; make the model resident (no sleep:) "
                "for the Kubernetes target",
            )
        if model_directory(spec.model) is not None:
            raise _fail(
                ("models", position, "model"),
                f"{spec.model!r} is a directory of this host, which a cluster's nodes do not have: name the Hub "
                "repo (pods download it into the hf-cache claim) for the Kubernetes target",
            )
    if kube.adapters_claim is None:
        for position, spec in enumerate(stack.models):
            if spec.runtime_loras is not None or any(lora.path is not None for lora in spec.loras):
                raise _fail(
                    ("kubernetes", "adapters_claim"),
                    f"not set, but models[{position}] ({spec.name}) serves LoRA adapters from host folders, "
                    "which a cluster does not have: name a PersistentVolumeClaim holding them",
                )


def _check_model_cards(stack: StackSpec, model: ModelPlan) -> None:
    """A tensor-parallel pod runs on one node, on cards HAMi may choose from."""
    kube = stack.kubernetes
    nodes = {kube.nodes.get(i) for i in model.gpus}
    if len(nodes) > 1:
        listed = ", ".join(f"GPU {i} -> {kube.nodes.get(i) or 'any node'}" for i in model.gpus)
        raise _fail(
            ("kubernetes", "nodes"),
            f"{model.name} runs on GPUs {model.gpu_label}, which must be on one node (one pod): {listed}",
        )
    pinned = [i for i in model.gpus if i in kube.gpu_uuids]
    if pinned and len(pinned) != len(model.gpus):
        raise _fail(
            ("kubernetes", "gpu_uuids"),
            f"{model.name} runs on GPUs {model.gpu_label} but only GPU {', '.join(map(str, pinned))} has a UUID: "
            "HAMi would let it use only those cards; give a UUID for each of its GPUs or for none",
        )


def _check_time_slicing(stack: StackSpec, plan: Plan, used: list[int]) -> None:
    kube = stack.kubernetes
    if kube.gpu_uuids:
        raise _fail(("kubernetes", "gpu_uuids"), "pins cards through HAMi; set gpu_sharing: hami or remove it")
    for model in plan.models:
        if model.tensor_parallel > 1:
            raise _fail(
                ("models", model.stack_index, "gpu"),
                f"{model.name} is tensor parallel over GPUs {model.gpu_label}: time-slicing may hand one pod two "
                "replicas of the same card; use gpu_sharing: hami",
            )
    if len(used) < 2:
        return
    missing = [i for i in used if i not in kube.nodes]
    if missing:
        raise _fail(
            ("kubernetes", "nodes"),
            f"GPU {missing[0]} has no node: with time-slicing the device plugin picks the card, so each of "
            f"GPUs {', '.join(map(str, used))} needs its own one-GPU node (or use gpu_sharing: hami)",
        )
    owner: dict[str, int] = {}
    for index in used:
        node = kube.nodes[index]
        if node in owner:
            raise _fail(
                ("kubernetes", "nodes", index),
                f"GPUs {owner[node]} and {index} are both on node {node!r}: with time-slicing their models could "
                "share one card; give each planned GPU its own node (or use gpu_sharing: hami)",
            )
        owner[node] = index


def _check_hami(plan: Plan, unit: str) -> None:
    for model in plan.models:
        if not model.exact_kv:
            raise _fail(
                ("models", model.stack_index, "kv_cache"),
                f"{model.name}: HAMi shows a container only its memory share, so vLLM's fraction would apply to "
                "the share; HAMi needs the KV cache fixed in bytes (kv_cache: exact)"
                + (f" (here: {model.kv_note})" if model.kv_note else ""),
            )
    if unit == "mib":
        return  # whole MiB: the planner's fit check already covers the peaks
    for card in plan.gpus:
        shares = {m.name: hami_memory(plan, plan.model(m.name), unit) for m in card.models}
        if sum(shares.values()) > 100:
            listed = ", ".join(f"{name} {percent}%" for name, percent in shares.items())
            raise _fail(
                ("kubernetes", "hami_memory"),
                f"on GPU {card.index} the HAMi memory shares add up to {sum(shares.values())}% ({listed}) after "
                "rounding up to whole percent; use hami_memory: mib (exact) or lower a model's memory",
            )
