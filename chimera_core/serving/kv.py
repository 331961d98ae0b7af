"""A batch of sequences decoding together: left-padded KV cache, mask and positions.

Rows join (``merge``) and leave (``keep``) between decode steps; that is what lets requests
arriving at different times share forward passes (continuous batching).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from transformers.cache_utils import DynamicLayer

RowT = TypeVar("RowT")


def check_cache(cache: Any) -> None:
    """Refuse caches whose layers are not plain growing tensors (e.g. sliding windows)."""
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise TypeError(
                f"batched serving needs plain KV cache layers, got {type(layer).__name__}"
            )


def _pad_left(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


@dataclass
class Batch(Generic[RowT]):
    """Rows plus their shared cache; row i's real tokens are the right end of its mask."""

    rows: list[RowT]
    cache: Any  # a DynamicCache whose layers are all DynamicLayer (see check_cache)
    mask: torch.Tensor  # [B, T] 1 where the cache column holds a real token of that row
    pos: torch.Tensor  # [B] position id of the next token fed
    last: torch.Tensor  # [B] the token to feed next

    @property
    def width(self) -> int:
        """Cache columns (the longest row, plus left padding)."""
        return int(self.mask.shape[1])

    def keep(self, indices: list[int]) -> Batch[RowT] | None:
        """This batch restricted to some rows (None when empty), dropping unused padding."""
        if not indices:
            return None
        if len(indices) == len(self.rows):
            return self
        index = torch.tensor(indices)
        mask = self.mask.index_select(0, index)
        # Columns no remaining row uses are pure padding: cut them to keep attention short.
        first = int(torch.nonzero(mask.any(dim=0))[0]) if mask.any() else 0
        layers: list[Any] = self.cache.layers
        for layer in layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, first:]
            layer.values = layer.values.index_select(0, index)[:, :, first:]
        return Batch(
            rows=[self.rows[i] for i in indices],
            cache=self.cache,
            mask=mask[:, first:],
            pos=self.pos.index_select(0, index),
            last=self.last.index_select(0, index),
        )

    @property
    def dtype(self) -> torch.dtype:
        """The cache's dtype."""
        dtype: torch.dtype = self.cache.layers[0].keys.dtype
        return dtype

    def to(self, dtype: torch.dtype) -> Batch[RowT]:
        """Convert the cache (for a model copy in another dtype); a no-op if it matches."""
        if self.dtype != dtype:
            layers: list[Any] = self.cache.layers
            for layer in layers:
                layer.keys = layer.keys.to(dtype)
                layer.values = layer.values.to(dtype)
        return self

    def merge(self, other: Batch[RowT]) -> Batch[RowT]:
        """One batch with both sets of rows, the narrower left-padded to the wider."""
        other.to(self.dtype)
        width = max(self.width, other.width)
        pairs: list[tuple[Any, Any]] = list(zip(self.cache.layers, other.cache.layers, strict=True))
        for mine, theirs in pairs:
            mine.keys = torch.cat(
                [
                    _pad_left(mine.keys, width - self.width, 2),
                    _pad_left(theirs.keys, width - other.width, 2),
                ]
            )
            mine.values = torch.cat(
                [
                    _pad_left(mine.values, width - self.width, 2),
                    _pad_left(theirs.values, width - other.width, 2),
                ]
            )
        return Batch(
            rows=self.rows + other.rows,
            cache=self.cache,
            mask=torch.cat(
                [
                    _pad_left(self.mask, width - self.width, 1),
                    _pad_left(other.mask, width - other.width, 1),
                ]
            ),
            pos=torch.cat([self.pos, other.pos]),
            last=torch.cat([self.last, other.last]),
        )


def left_padded(
    prompts: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and position ids for prompts of different lengths."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, width - len(prompt) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions
