"""DM-GAN (METHODS.md §3): AttnGAN's stages, discriminators and losses (:mod:`t2i.gan.attngan`)
with the word attention of every refinement stage replaced by a *dynamic memory*.

Written from the method description, not from the reference code. For hidden image features
r (C x H x W, pixels r_j), their mean r̄, and words w_i (D-d, i over the caption's real words):

* **memory writing**: gate g_w_i = σ(A(w_i) + B(r̄)) (A: D -> 1, B: C -> 1);
  slot m_i = M_w(w_i)·g_w_i + M_r(r̄)·(1 − g_w_i) (M_w: D -> N, M_r: C -> N; N = ``mem_dim``);
* **key addressing**: α_ij = softmax over words i of (φ_K(m_i)ᵀ r_j) (φ_K: N -> C; padded words get 0);
* **value reading**: o_j = Σ_i α_ij φ_V(m_i) (φ_V: N -> C);
* **response gate**: g_r_j = σ(W[r_j; o_j] + b); output r_j·(1 − g_r_j) + o_j·g_r_j (C channels).

The response then goes through the stage's residual blocks and up-block, exactly as AttnGAN's
``[h; context]`` does (C instead of 2C channels there).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from imagetext.registry import GANS

from .attngan import AttnGAN, masked_softmax_over_words


class DynamicMemory(nn.Module):
    """Memory writing, key addressing, value reading and the response gate (output C channels).

    ``forward(h, words, mask) -> (out, maps)``, maps: ``write_gate`` (B, T), ``attention`` (B, T, H, W),
    ``response_gate`` (B, 1, H, W).
    """

    def __init__(self, word_dim: int, channels: int, mem_dim: int) -> None:
        super().__init__()
        self.write_word = nn.Linear(word_dim, 1)       # A
        self.write_image = nn.Linear(channels, 1)      # B
        self.mem_word = nn.Linear(word_dim, mem_dim)   # M_w
        self.mem_image = nn.Linear(channels, mem_dim)  # M_r
        self.key = nn.Linear(mem_dim, channels)        # φ_K
        self.value = nn.Linear(mem_dim, channels)      # φ_V
        self.response = nn.Conv2d(2 * channels, 1, 1)  # W, b on [r; o]
        self.out_channels = channels

    def forward(self, h: torch.Tensor, words: torch.Tensor,
                mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        b, c, hh, ww = h.shape
        w = words.to(h.dtype).transpose(1, 2)                                    # (B, T, D)
        r_mean = h.mean(dim=(2, 3))                                             # (B, C)
        g_w = torch.sigmoid(self.write_word(w) + self.write_image(r_mean)[:, None, :])  # (B, T, 1)
        memory = self.mem_word(w) * g_w + self.mem_image(r_mean)[:, None, :] * (1.0 - g_w)  # (B, T, N)
        keys, values = self.key(memory), self.value(memory)                     # (B, T, C)
        r = h.flatten(2)                                                        # (B, C, L)
        attn = masked_softmax_over_words(torch.bmm(keys, r), mask)              # (B, T, L)
        o = torch.bmm(values.transpose(1, 2), attn).view(b, c, hh, ww)          # (B, C, H, W)
        g_r = torch.sigmoid(self.response(torch.cat([h, o], 1)))                # (B, 1, H, W)
        out = h * (1.0 - g_r) + o * g_r
        return out, {"write_gate": g_w.squeeze(2), "attention": attn.view(b, -1, hh, ww), "response_gate": g_r}


@GANS.register("dmgan")
class DMGAN(AttnGAN):
    """DM-GAN: :class:`~t2i.gan.attngan.AttnGAN` with :class:`DynamicMemory` as the refinement stages' fusion.
    ``mem_dim``: the memory slots' size N (default: ``ngf``). Every other argument is AttnGAN's."""

    tiny = {**AttnGAN.tiny, "mem_dim": 4}

    def __init__(self, mem_dim: Optional[int] = None, **kwargs) -> None:
        if mem_dim is not None and int(mem_dim) < 1:
            raise ValueError(f"mem_dim must be >= 1, got {mem_dim}")
        # read by make_fusion while AttnGAN.__init__ builds the generator (a plain int: settable before
        # nn.Module.__init__)
        self._mem_dim = None if mem_dim is None else int(mem_dim)
        super().__init__(**kwargs)

    def make_fusion(self, word_dim: int, channels: int) -> nn.Module:
        return DynamicMemory(word_dim, channels, self._mem_dim or channels)
