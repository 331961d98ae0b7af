"""A tiny random Llama and a character tokenizer: the engine and routes without the real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from chimera_core.config.models import EmbeddedServerConfig
from chimera_core.serving.engine import GenerationEngine
from chimera_core.serving.pool import LoadedModel, ModelPool

ALPHABET = ["<eos>", "<pad>", *'abcdefghijklmnopqrstuvwxyz0123456789 {}[]:,"-.\n']
EOS, PAD = 0, 1


class CharCodec:
    """One token per character; what the engine and routes need from a TokenCodec."""

    eos_ids = frozenset({EOS})
    pad_id = PAD
    special_ids = frozenset({EOS, PAD})
    vocab_size = len(ALPHABET)
    has_chat_template = True
    template_renders_tools = False

    def encode(self, text: str) -> list[int]:
        return [ALPHABET.index(c) if c in ALPHABET[2:] else ALPHABET.index(" ") for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(ALPHABET[i] for i in ids if i not in self.special_ids)

    def piece(self, token_id: int) -> str | None:
        return None if token_id in self.special_ids else ALPHABET[token_id]

    def token_text(self, token_id: int) -> str:
        return ALPHABET[token_id]

    def render(self, messages: list[dict[str, Any]], tools: Any) -> str:
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer random Llama over the character vocabulary (peaked logits: no argmax ties)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(ALPHABET),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.5,
        bos_token_id=PAD,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    return LlamaForCausalLM(config).eval()


def tiny_engine(max_batch_size: int = 4, seed: int = 0) -> GenerationEngine:
    """A started engine around the tiny model."""
    codec: Any = CharCodec()
    return GenerationEngine(
        tiny_model(seed), codec, label="tiny", max_batch_size=max_batch_size
    ).start()


def tiny_pool(names: list[str], settings: EmbeddedServerConfig) -> ModelPool:
    """A pool serving the tiny model under ``names`` (no directory, nothing loaded from disk)."""
    pool = ModelPool(settings)
    engine = tiny_engine(settings.max_batch_size)
    loaded = LoadedModel(
        key="tiny",
        path=Path("/tiny"),
        engine=engine,
        codec=engine.codec,
        dtype="float32",
        num_parameters=sum(p.numel() for p in engine.model.parameters()),
        load_seconds=0.0,
        names=set(names),
    )
    pool._by_key["tiny"] = loaded
    for name in names:
        pool._names[name] = loaded
    return pool
