"""Tiny random-weight stand-ins for the real models, made offline at image build.

One model per architecture family (llama, mistral, qwen2, qwen3), sharing one
byte-level BPE tokenizer trained on the image's own Python sources, with a
ChatML chat template; and one LoRA adapter per family (peft, rank 8, random
weights, on the attention projections). Nothing comes from a model hub.

Runs inside the vLLM CPU image (torch, transformers, tokenizers, peft):

    python3 tiny.py build /opt/gsc-tiny
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAMILIES = {
    # family: (transformers model_type, architecture) -- all small: 2 layers,
    # hidden 128, head_dim 64 (a size vLLM's CPU attention supports).
    "llama": ("llama", "LlamaForCausalLM"),
    "mistral": ("mistral", "MistralForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
}
VOCAB = 4096
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = sorted(Path(sys.prefix).rglob("*.py"))[:400] or sorted(Path("/usr/lib/python3.11").rglob("*.py"))[:400]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train([str(p) for p in corpus], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def build_model(family: str, out: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, architecture = FAMILIES[family]
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=0,
        architectures=[architecture],
        torch_dtype="bfloat16",
    )
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    for source in tokenizer_dir.iterdir():  # tokenizer, its config, chat_template.jinja
        (out / source.name).write_bytes(source.read_bytes())
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0, "max_new_tokens": 64})
    )


def build_adapter(model_dir: Path, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, lora_dropout=0.0,
                        init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
    get_peft_model(base, config).save_pretrained(out)


def build(root: Path) -> None:
    tokenizer_dir = root / "tokenizer"
    build_tokenizer(tokenizer_dir)
    for family in FAMILIES:
        model_dir = root / "models" / family
        build_model(family, model_dir, tokenizer_dir)
        build_adapter(model_dir, root / "adapters" / family)
        print(f"tiny {family}: {model_dir}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["build"] or len(sys.argv) != 3:
        sys.exit("usage: tiny.py build DIR")
    build(Path(sys.argv[2]))
