"""A tiny random Llama HF directory (byte-level tokenizer, chat template) and adapters for it.

Trains and merges in seconds on a CPU; it stands in for SmolLM2 wherever the weights' values do
not matter, only the shapes and the files.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llama(path: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide random Llama with a byte-level tokenizer in ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    raw = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)  # float32, the default
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_adapter(base_dir: Path, path: Path, r: int = 4, seed: int = 1) -> Path:
    """A rank-``r`` adapter for ``base_dir`` with random (non-zero) weights, saved in ``path``."""
    import torch

    from chimera_plugins.algorithms.lora import LoraSpec, load_for_training, save_adapter

    model, _ = load_for_training(base_dir, None, LoraSpec(r, 2 * r))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.2)  # lora_B starts at zero: the adapter would be a no-op
    return save_adapter(model, path)


def profile_aliases(profile: str = "local") -> list[str]:
    """The model aliases a profile defines (each needs the same base checkpoint)."""
    import yaml

    from chimera_core.config.loader import resolve_profile_path

    return list(yaml.safe_load(resolve_profile_path(profile).read_text())["models"])
