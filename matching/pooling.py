"""Generalised pooling operator (GPO, VSE∞: Chen et al., CVPR 2021), with variable set sizes.

A set of N feature vectors φ_1..φ_N ∈ R^D (regions, grid cells or words) is pooled per
dimension d as a weighted sum over ranks:

    v_d = Σ_{k=1..N} θ_k · max_k({φ_n,d}),

where max_k is the k-th largest value of dimension d. θ = 1 at k = 1 is max pooling,
θ_k = 1/N average pooling, and anything between (K-max, soft top-k) is reachable: VSE∞
learns θ instead of choosing a pooling by hand. The weights depend on the ranks and on
N only, never on the feature values: a bidirectional GRU reads the sinusoidal positional
encodings p_1..p_N of the rank indices (d_pe = 32), the two directions' hidden states
are averaged (d_hidden = 32), a linear map gives one score per rank, and

    θ = softmax(scores / τ) over the N valid ranks (τ = 0.1, as in VSE∞).

Reading the encodings in both directions lets θ_k depend on N (the backward state at
rank k has seen N - k further ranks), so one generator serves sets of any size.

Variable sizes. A (B, K, D) batch padded to K comes with ``lengths`` (valid items first)
or a boolean ``mask`` (any positions). Padding never reaches the output: padded values
are replaced by -inf before sorting (so they sort last, whatever they held, NaN
included), the ranks past N are zeroed after sorting, their scores are -inf (θ_k = 0
exactly), and the GRU runs on packed sequences, so its backward direction starts at the
last valid rank, not in the padding. Since θ depends on N only, it is computed once per
distinct N in the batch. The sort also makes the output invariant to the order of the
set's items.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class PoolingInputError(ValueError):
    """Features, lengths or a mask GPO cannot pool; the message says which."""


def positional_encoding(length: int, dim: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """(length, dim) sinusoidal encodings of positions 0..length-1: sin / cos at geometric frequencies 1..1e-4."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class GPO(nn.Module):
    """Generalised pooling: (B, K, D) features (+ lengths or mask) -> (B, D) by learned rank weights."""

    def __init__(self, d_pe: int = 32, d_hidden: int = 32, temperature: float = 0.1) -> None:
        super().__init__()
        if d_pe < 2 or d_pe % 2:
            raise PoolingInputError(f"d_pe must be an even number >= 2, got {d_pe}")
        if not temperature > 0:
            raise PoolingInputError(f"temperature must be > 0, got {temperature}")
        self.d_pe, self.d_hidden, self.temperature = d_pe, d_hidden, float(temperature)
        self.gru = nn.GRU(d_pe, d_hidden, batch_first=True, bidirectional=True)
        self.score = nn.Linear(d_hidden, 1, bias=False)

    def rank_weights(self, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        """(B, max_len) weights θ: softmax over the first lengths[b] ranks, exactly 0 after them."""
        uniq, inverse = torch.unique(lengths, return_inverse=True)
        n = int(uniq.max())
        pe = positional_encoding(n, self.d_pe, device=self.score.weight.device).to(self.score.weight.dtype)
        packed = pack_padded_sequence(pe.expand(len(uniq), n, self.d_pe), uniq.cpu(), batch_first=True,
                                      enforce_sorted=False)
        hidden, _ = self.gru(packed)
        hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=max_len)
        hidden = (hidden[..., : self.d_hidden] + hidden[..., self.d_hidden:]) / 2
        scores = self.score(hidden).squeeze(-1) / self.temperature
        valid = torch.arange(max_len, device=scores.device)[None, :] < uniq.to(scores.device)[:, None]
        weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
        return weights[inverse.to(weights.device)]

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None, return_weights: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Pool ``features`` (B, K, D); ``lengths`` (B,) or ``mask`` (B, K) mark the valid items (default: all).

        Returns (B, D), or ((B, D), (B, K) rank weights) with ``return_weights``.
        """
        valid = self._valid(features, lengths, mask)
        b, k, d = features.shape
        if b == 0:
            empty = features.new_zeros(0, d)
            return (empty, features.new_zeros(0, k)) if return_weights else empty
        counts = valid.sum(1)
        x = features.masked_fill(~valid[..., None], float("-inf"))
        ranked = x.sort(dim=1, descending=True).values
        rank_valid = torch.arange(k, device=features.device)[None, :] < counts[:, None]
        ranked = ranked.masked_fill(~rank_valid[..., None], 0.0)
        weights = self.rank_weights(counts, k).to(ranked.dtype)
        pooled = (weights[..., None] * ranked).sum(1)
        return (pooled, weights) if return_weights else pooled

    @staticmethod
    def _valid(features: torch.Tensor, lengths: Optional[torch.Tensor], mask: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, K) bool of valid items, after checking shapes and that every set has at least one item."""
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or not features.is_floating_point():
            got = f"{features.dtype} {tuple(features.shape)}" if isinstance(features, torch.Tensor) else type(features)
            raise PoolingInputError(f"features must be a floating (B, K, D) tensor, got {got}")
        b, k, _ = features.shape
        if k == 0:
            raise PoolingInputError("features hold no items (K = 0)")
        if lengths is not None and mask is not None:
            raise PoolingInputError("give lengths or mask, not both")
        if mask is not None:
            if mask.shape != (b, k) or mask.dtype != torch.bool:
                raise PoolingInputError(f"mask must be a bool ({b}, {k}) tensor, got {mask.dtype} {tuple(mask.shape)}")
            valid = mask.to(features.device)
        elif lengths is not None:
            lengths = torch.as_tensor(lengths, device=features.device)
            if lengths.shape != (b,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
                raise PoolingInputError(f"lengths must be ({b},) integers, got {lengths.dtype} {tuple(lengths.shape)}")
            if bool((lengths > k).any()):
                raise PoolingInputError(f"lengths must be <= K = {k}, got {int(lengths.max())}")
            valid = torch.arange(k, device=features.device)[None, :] < lengths[:, None]
        else:
            return torch.ones(b, k, dtype=torch.bool, device=features.device)
        if b and not bool(valid.any(1).all()):
            raise PoolingInputError("every set needs at least one valid item (a length or mask row is empty)")
        return valid

    def extra_repr(self) -> str:
        return f"d_pe={self.d_pe}, d_hidden={self.d_hidden}, temperature={self.temperature}"
