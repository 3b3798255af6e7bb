"""DAMSM losses (AttnGAN, Xu et al. 2018): word-level and sentence-level matching.

Text: word features e (D x T) and sentence ē; image: region features v (D x L, L = H·W,
17x17 for Inception) and global v̄. For caption Q and image D:

- Sentence score R_s(Q, D) = cos(ē, v̄).
- Word score: s = eᵀv (T x L, raw dot products); normalise over words,
  s̄_tl = softmax_t(s_tl); attend over regions, α_tl = softmax_l(γ1 s̄_tl); region
  context c_t = Σ_l α_tl v_l; R_w(Q, D) = (1/γ2) log Σ_t exp(γ2 cos(c_t, e_t)).
  The paper writes this as log(Σ_t exp(γ2 cos))^(1/γ2), i.e. a log-sum-exp "soft max"
  over words that tends to max_t cos as γ2 grows. The AttnGAN code omits the 1/γ2
  (its word logits are γ2 = 5 times larger); ``lse_root=False`` reproduces that.
- Posterior P(D_i | Q_i) = exp(γ3 R(Q_i, D_i)) / Σ_j exp(γ3 R(Q_i, D_j)); the loss is
  the cross-entropy in both directions (caption→image over the row, image→caption over
  the column), **summed** as AttnGAN does (its lr 2e-3 and gradient clip 0.25 were tuned
  for the sum). Defaults γ1 = 4, γ2 = 5, γ3 = 10.

Only real words take part: padded positions are -inf both in the softmax over words and
in the log-sum-exp, so a caption's score does not depend on the batch's longest caption.

Same-class negatives: with ``class_ids``, a j ≠ i with class_ids[j] == class_ids[i] is
not a negative for i: its logit is set to -inf in both directions (AttnGAN's masks).
Class id -1 (unknown) masks nothing. The diagonal (the true pair) is never masked.

All pairs are computed at once: s is (captions x images x T x L); ``chunk_size`` bounds
the captions per step for large batches. The score functions accept different numbers
of captions and images, so they also serve R-precision.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._common import LossInputError, check_features, compute_dtype, full_precision

GAMMA1, GAMMA2, GAMMA3 = 4.0, 5.0, 10.0


def _regions(regions: torch.Tensor) -> torch.Tensor:
    if regions.dim() == 4:
        return regions.flatten(2)
    if regions.dim() != 3:
        raise LossInputError(f"regions must be (B, D, H, W) or (B, D, L), got {tuple(regions.shape)}")
    return regions


def words_mask_from(words: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                    words_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, T) bool, True on real words, from ``lengths`` (B,) or ``words_mask``; all True if neither."""
    b, _, t = words.shape
    if words_mask is not None:
        if words_mask.shape != (b, t):
            raise LossInputError(f"words_mask must be ({b}, {t}), got {tuple(words_mask.shape)}")
        mask = words_mask.to(words.device, torch.bool)
    elif lengths is not None:
        if lengths.shape != (b,):
            raise LossInputError(f"lengths must be ({b},), got {tuple(lengths.shape)}")
        lengths = lengths.to(words.device)
        if bool((lengths > t).any()):
            raise LossInputError(f"a caption length exceeds the {t} word positions given")
        mask = torch.arange(t, device=words.device)[None, :] < lengths[:, None]
    else:
        mask = torch.ones(b, t, dtype=torch.bool, device=words.device)
    if b and not bool(mask.any(1).all()):
        raise LossInputError("every caption needs at least one word (length >= 1)")
    return mask


def damsm_sentence_scores(sentence: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B_cap, B_img) cosine similarities cos(ē_i, v̄_j)."""
    check_features(sentence, "sentence")
    check_features(image, "image", dim=sentence.shape[1])
    dtype = compute_dtype(sentence, image)
    with full_precision(sentence.device):
        return F.normalize(sentence.to(dtype), dim=1) @ F.normalize(image.to(dtype), dim=1).T


def damsm_word_scores(regions: torch.Tensor, words: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                      words_mask: Optional[torch.Tensor] = None, gamma1: float = GAMMA1, gamma2: float = GAMMA2,
                      lse_root: bool = True, chunk_size: Optional[int] = None) -> torch.Tensor:
    """(B_cap, B_img) word-level scores R_w(Q_i, D_j); see the module docstring.

    Args:
        regions: (B_img, D, H, W) or (B_img, D, L) region features.
        words: (B_cap, D, T) word features; padding after each caption's length.
        lengths / words_mask: real words per caption ((B_cap,) or (B_cap, T) bool).
        lse_root: divide the log-sum-exp by γ2 (paper); False = AttnGAN code.
        chunk_size: captions per step (None = all at once).
    """
    v = _regions(regions)
    if words.dim() != 3 or v.shape[1] != words.shape[1]:
        raise LossInputError(f"words must be (B, {v.shape[1]}, T), got {tuple(words.shape)}")
    mask = words_mask_from(words, lengths, words_mask)
    dtype = compute_dtype(v, words)
    with full_precision(words.device):
        v, e = v.to(dtype), words.to(dtype)
        rows = []
        step = chunk_size or max(1, e.shape[0])
        for start in range(0, e.shape[0], step):
            ec, mc = e[start:start + step], mask[start:start + step]
            s = torch.einsum("bdt,cdl->bctl", ec, v)                        # captions x images x T x L
            s = s.masked_fill(~mc[:, None, :, None], float("-inf")).softmax(dim=2)  # over real words
            alpha = (gamma1 * s).softmax(dim=3)                              # over regions
            context = torch.einsum("bctl,cdl->bctd", alpha, v)
            # cos(c, e) = (c · ê) / |c|: a contraction and a norm over the (B_cap, B_img, T, D) context
            # instead of normalising it elementwise (F.normalize's max(|x|, 1e-12) kept): the same
            # value, without two full-size temporaries and their backward
            dot = torch.einsum("bctd,bdt->bct", context, F.normalize(ec, dim=1))
            cos = dot / torch.linalg.vector_norm(context, dim=3).clamp_min(1e-12)
            cos = cos.masked_fill(~mc[:, None, :], float("-inf"))
            r = torch.logsumexp(gamma2 * cos, dim=2)
            rows.append(r / gamma2 if lse_root else r)
        return torch.cat(rows, 0) if rows else e.new_zeros(0, v.shape[0])


def same_class_negatives(class_ids: Optional[torch.Tensor], n: int, device: torch.device) -> Optional[torch.Tensor]:
    """(n, n) bool: off-diagonal pairs with the same known class (to drop from the negatives)."""
    if class_ids is None:
        return None
    if class_ids.shape != (n,) or class_ids.is_floating_point():
        raise LossInputError(f"class_ids must be ({n},) integer ids, got {class_ids.dtype} {tuple(class_ids.shape)}")
    c = class_ids.to(device)
    same = (c[:, None] == c[None, :]) & (c[:, None] >= 0)
    return same & ~torch.eye(n, dtype=torch.bool, device=device)


def matching_loss(scores: torch.Tensor, class_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sum of both cross-entropy directions of a square (caption x image) logit matrix.

    The true pairs are on the diagonal; same-class off-diagonal logits become -inf.
    """
    n = scores.shape[0]
    if scores.dim() != 2 or scores.shape[1] != n:
        raise LossInputError(f"matching needs as many captions as images, got scores {tuple(scores.shape)}")
    mask = same_class_negatives(class_ids, n, scores.device)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    target = torch.arange(n, device=scores.device)
    return F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)


def damsm_sentence_loss(sentence: torch.Tensor, image: torch.Tensor, class_ids: Optional[torch.Tensor] = None,
                        gamma3: float = GAMMA3) -> torch.Tensor:
    """Sentence loss: both-direction cross-entropy of γ3·cos(ē_i, v̄_j), same class masked."""
    check_features(image, "image", n=sentence.shape[0] if sentence.dim() == 2 else None)
    return matching_loss(gamma3 * damsm_sentence_scores(sentence, image), class_ids)


def damsm_word_loss(regions: torch.Tensor, words: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                    class_ids: Optional[torch.Tensor] = None, gamma1: float = GAMMA1, gamma2: float = GAMMA2,
                    gamma3: float = GAMMA3, words_mask: Optional[torch.Tensor] = None, lse_root: bool = True,
                    chunk_size: Optional[int] = None) -> torch.Tensor:
    """Word loss: both-direction cross-entropy of γ3·R_w(Q_i, D_j), same class masked."""
    scores = damsm_word_scores(regions, words, lengths, words_mask, gamma1, gamma2, lse_root, chunk_size)
    return matching_loss(gamma3 * scores, class_ids)


class DamsmLoss(nn.Module):
    """DAMSM word + sentence losses: ``{"damsm_word_loss", "damsm_sent_loss"}`` (weighted)."""

    def __init__(self, gamma1: float = GAMMA1, gamma2: float = GAMMA2, gamma3: float = GAMMA3,
                 word_weight: float = 1.0, sent_weight: float = 1.0, lse_root: bool = True,
                 chunk_size: Optional[int] = None, prefix: str = "damsm") -> None:
        super().__init__()
        self.gamma1, self.gamma2, self.gamma3 = float(gamma1), float(gamma2), float(gamma3)
        self.word_weight, self.sent_weight = float(word_weight), float(sent_weight)
        self.lse_root, self.chunk_size, self.prefix = lse_root, chunk_size, prefix

    def forward(self, regions: torch.Tensor, words: torch.Tensor, sentence: torch.Tensor, image: torch.Tensor,
                lengths: Optional[torch.Tensor] = None, class_ids: Optional[torch.Tensor] = None,
                words_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """regions (B, D, H, W | L), words (B, D, T), sentence (B, D), image global (B, D)."""
        out = {}
        if self.word_weight:
            out[f"{self.prefix}_word_loss"] = self.word_weight * damsm_word_loss(
                regions, words, lengths, class_ids, self.gamma1, self.gamma2, self.gamma3, words_mask,
                self.lse_root, self.chunk_size)
        if self.sent_weight:
            out[f"{self.prefix}_sent_loss"] = self.sent_weight * damsm_sentence_loss(
                sentence, image, class_ids, self.gamma3)
        return out

    def extra_repr(self) -> str:
        return (f"gamma=({self.gamma1}, {self.gamma2}, {self.gamma3}), word_weight={self.word_weight}, "
                f"sent_weight={self.sent_weight}, lse_root={self.lse_root}")
