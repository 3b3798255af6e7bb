"""Matching losses: VSE0, VSE++, InfoNCE and Deep Boosting Learning (METHODS.md section 4).

Notation. ``sim`` is S, the (B, B) similarity of B images (rows) and B captions
(columns) of the target branch, the matching pairs on the diagonal; ``anchor_sim`` is
A, the same for the anchor branch. The anchor is a teacher: A is detached here, so no
gradient reaches it even when it requires one. γ is ``margin``.

Every hinge loss has two directions, summed over the batch as in VSE++: image→text
(row i: its caption S_ii against the other captions S_ij, j≠i) and text→image (column
j: its image S_jj against the other images S_ij, i≠j). ``max_violation=True`` is the
Max form (only the hardest negative of each row / column counts), ``False`` the Sum form
(every negative counts). Because [·]₊ is monotone, max_j [x_j]₊ = [max_j x_j]₊, and the
hardest negative is found on the hinged costs with the diagonal set to 0 (costs are
>= 0, so a 0 never wins a max over a positive cost and a 1 x 1 batch gives 0).

- Raw / anchor loss, VSE++ (Faghri et al. 2018); the Sum form is VSE0:
    L_raw(S) = Σ_i max_{j≠i} [γ + S_ij - S_ii]₊ + Σ_j max_{i≠j} [γ + S_ij - S_jj]₊.
- Relative boosting: the target's gap must exceed the anchor's gap by γβ,
    L_rel = Σ_i max_{j≠i} [γβ + (A_ii - A_ij) - (S_ii - S_ij)]₊
          + Σ_j max_{i≠j} [γβ + (A_jj - A_ij) - (S_jj - S_ij)]₊.
- Absolute boosting, γ₊ = γβg and γ₋ = γβ(1-g): the target's positive must lie γ₊ above
  the anchor's, each negative γ₋ below the anchor's,
    L_abs = Σ_dir Σ_i [γ₊ + A_ii - S_ii]₊ + Σ_i max_{j≠i} [γ₋ + S_ij - A_ij]₊ + (column form).
  METHODS.md says "positives ... (both directions)": the positive hinge belongs to each
  direction, so it is counted twice (once with the rows, once with the columns). This
  keeps L_abs symmetric in the two directions and gives it the same collapse value as
  L_rel (below).
- Target loss (what :func:`dbl_relative_loss` / :func:`dbl_absolute_loss` return):
    L = L_raw(S) + α·L_boost(S, sg(A)),  α = 1, β = 1, g = 0.5 by default.
  L_raw uses the same Max/Sum form as the boost term, so one warm-up switch (VSE0 →
  hardest negatives, :func:`hardest_after`) drives both. The boost terms alone are
  :func:`relative_boost_loss` / :func:`absolute_boost_loss` (the online regime boosts
  branch k by every earlier branch: L_raw once plus one boost term per anchor).

Soft margin. Near the similarity bound the anchor leaves no room for a fixed margin
(cosines are <= 1, so S_ii cannot exceed A_ii + γ₊ when A_ii > 1 - γ₊). METHODS.md
replaces a margin γ' by m(a) = 2γ' / (1 + exp((2/γ')(a - edge))) - γ', which is
γ'·tanh((edge - a)/γ') (since 2σ(x) - 1 = tanh(x/2)); that form is used, it is stable
for any a. m ≈ γ' far from the edge, 0 at the edge. The margins and anchor quantities:
  relative: γ' = γβ, a = the anchor's gap A_ii - A_ij (rows) / A_jj - A_ij (columns), edge 2;
  absolute positives: γ' = γ₊, a = A_ii, edge 1;
  absolute negatives: γ' = γ₋, a = -A_ij, edge 1 (the bound a negative approaches is -1).
METHODS.md names a single "a"; which γ' sits in the formula and the mirrored a for the
negatives are this module's reading. The soft margin only applies to the boost terms
(L_raw keeps γ). A depends on the anchor only, so m carries no gradient.

Collapse (:func:`collapse_value`). When every embedding collapses to one vector, S is a
constant matrix and every gap is 0. Max form: each of the 2B rows/columns contributes γ,
L_raw = 2Bγ; Sum form: 2B(B-1)γ. If the anchor has collapsed too (A = S, e.g. a momentum
anchor), L_rel = 2Bγβ and L_abs = 2B(γ₊ + γ₋) = 2Bγβ (Max; Sum: the negative part times
B-1), so the target loss is 2Bγ(1 + αβ). InfoNCE on a constant matrix is log B.

Inputs are validated (square, same shape, floating, finite; :class:`MatchingLossError`,
a ValueError); half / bfloat16 similarities are computed in float32 with autocast off.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from imagetext.losses import LossInputError
from imagetext.losses._common import compute_dtype, full_precision, zero_with_grad

DEFAULT_MARGIN = 0.2
DEFAULT_TEMPERATURE = 0.05
BOOST_MODES = ("relative", "absolute")
COLLAPSE_KINDS = ("vse", "relative", "absolute", "infonce")

Anchors = Union[torch.Tensor, Sequence[torch.Tensor], None]


class MatchingLossError(LossInputError):
    """Similarity matrices or loss settings a matching loss cannot use; the message says which."""


# --------------------------------------------------------------------------- checks
def check_sim(sim: torch.Tensor, name: str = "sim", like: Optional[torch.Tensor] = None) -> None:
    """Raise :class:`MatchingLossError` unless ``sim`` is a finite floating (B, B) tensor (shaped like ``like``)."""
    if not isinstance(sim, torch.Tensor):
        raise MatchingLossError(f"{name} must be a tensor, got {type(sim).__name__}")
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise MatchingLossError(f"{name} must be a square (B, B) similarity matrix, got shape {tuple(sim.shape)}")
    if not sim.is_floating_point():
        raise MatchingLossError(f"{name} must be floating point, got {sim.dtype}")
    if like is not None and sim.shape != like.shape:
        raise MatchingLossError(f"{name} has shape {tuple(sim.shape)}, sim has {tuple(like.shape)}")
    if sim.numel() and not bool(torch.isfinite(sim).all()):
        raise MatchingLossError(f"{name} contains NaN or infinite values")


def _check_settings(margin: float, beta: float = 1.0, g: float = 0.5, soft: bool = False) -> None:
    if not margin >= 0:
        raise MatchingLossError(f"margin must be >= 0, got {margin}")
    if not beta >= 0:
        raise MatchingLossError(f"beta must be >= 0, got {beta}")
    if not 0 <= g <= 1:
        raise MatchingLossError(f"g must be in [0, 1], got {g}")
    if soft and not margin > 0:
        raise MatchingLossError("soft margins need margin > 0")


def _prepare(sim: torch.Tensor, anchor_sim: Optional[torch.Tensor] = None
             ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Checked S (widened to float32 if half) and detached A on S's device and dtype."""
    check_sim(sim, "sim")
    if anchor_sim is None:
        return sim.to(compute_dtype(sim)), None
    check_sim(anchor_sim, "anchor_sim", like=sim)
    dtype = compute_dtype(sim, anchor_sim)
    return sim.to(dtype), anchor_sim.detach().to(device=sim.device, dtype=dtype)


# --------------------------------------------------------------------------- building blocks
def soft_margin(anchor_value: torch.Tensor, margin: float, edge: float) -> torch.Tensor:
    """m = 2γ/(1 + exp((2/γ)(a - edge))) - γ = γ·tanh((edge - a)/γ), elementwise (γ = ``margin`` > 0)."""
    if margin == 0:
        return torch.zeros_like(anchor_value)
    return margin * torch.tanh((edge - anchor_value) / margin)


def _reduce_negatives(cost: torch.Tensor, dim: int, max_violation: bool) -> torch.Tensor:
    """Sum over the batch of the hardest (Max) or all (Sum) hinged costs along ``dim``, diagonal excluded."""
    eye = torch.eye(cost.shape[0], dtype=torch.bool, device=cost.device)
    cost = cost.masked_fill(eye, 0.0)
    if max_violation:
        return cost.max(dim=dim).values.sum()
    return cost.sum()


def _hinge_both(cost: torch.Tensor, max_violation: bool) -> torch.Tensor:
    """Row (image->text) plus column (text->image) reduction of one hinged (B, B) cost."""
    return _reduce_negatives(cost, 1, max_violation) + _reduce_negatives(cost, 0, max_violation)


def _raw(s: torch.Tensor, margin: float, max_violation: bool) -> torch.Tensor:
    diag = s.diagonal()
    i2t = F.relu(margin + s - diag[:, None])  # row i: S_ij - S_ii
    t2i = F.relu(margin + s - diag[None, :])  # column j: S_ij - S_jj
    return _reduce_negatives(i2t, 1, max_violation) + _reduce_negatives(t2i, 0, max_violation)


def _relative(s: torch.Tensor, a: torch.Tensor, margin: float, beta: float, max_violation: bool,
              soft: bool) -> torch.Tensor:
    gamma = margin * beta
    total = s.new_zeros(())
    for dim in (1, 0):  # rows: image->text, columns: text->image
        s_pos = s.diagonal()[:, None] if dim == 1 else s.diagonal()[None, :]
        a_pos = a.diagonal()[:, None] if dim == 1 else a.diagonal()[None, :]
        a_gap = a_pos - a
        m = soft_margin(a_gap, gamma, 2.0) if soft else gamma
        cost = F.relu(m + a_gap - (s_pos - s))
        total = total + _reduce_negatives(cost, dim, max_violation)
    return total


def _absolute(s: torch.Tensor, a: torch.Tensor, margin: float, beta: float, g: float, max_violation: bool,
              soft: bool) -> torch.Tensor:
    g_pos, g_neg = margin * beta * g, margin * beta * (1 - g)
    a_diag = a.diagonal()
    m_pos = soft_margin(a_diag, g_pos, 1.0) if soft else g_pos
    positives = F.relu(m_pos + a_diag - s.diagonal()).sum()
    m_neg = soft_margin(-a, g_neg, 1.0) if soft else g_neg
    neg_cost = F.relu(m_neg + s - a)
    return 2 * positives + _hinge_both(neg_cost, max_violation)


# --------------------------------------------------------------------------- public functions
def vse_loss(sim: torch.Tensor, margin: float = DEFAULT_MARGIN, max_violation: bool = True) -> torch.Tensor:
    """L_raw(S): VSE++ (``max_violation=True``, hardest negatives) or VSE0 (sum of all hinges), both directions."""
    _check_settings(margin)
    s, _ = _prepare(sim)
    if s.shape[0] == 0:
        return zero_with_grad(sim)
    with full_precision(s.device):
        return _raw(s, margin, max_violation)


def vse0_loss(sim: torch.Tensor, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """VSE0: Σ over all negatives of [γ + S_ij - S_ii]₊ (rows) and [γ + S_ij - S_jj]₊ (columns)."""
    return vse_loss(sim, margin, max_violation=False)


def vse_pp_loss(sim: torch.Tensor, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """VSE++: the hardest negative of each row and each column, summed over the batch."""
    return vse_loss(sim, margin, max_violation=True)


def infonce_loss(sim: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """Symmetric InfoNCE, ½[CE(S/t, arange) + CE(Sᵀ/t, arange)], mean over the batch (CLIP's convention)."""
    if not temperature > 0:
        raise MatchingLossError(f"temperature must be > 0, got {temperature}")
    s, _ = _prepare(sim)
    if s.shape[0] == 0:
        return zero_with_grad(sim)
    with full_precision(s.device):
        logits = s / temperature
        target = torch.arange(s.shape[0], device=s.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def relative_boost_loss(sim: torch.Tensor, anchor_sim: torch.Tensor, margin: float = DEFAULT_MARGIN,
                        beta: float = 1.0, max_violation: bool = True, soft: bool = False) -> torch.Tensor:
    """L_rel(S, sg(A)) alone (no L_raw): the target's gaps must beat the anchor's by γβ."""
    _check_settings(margin, beta, soft=soft)
    s, a = _prepare(sim, anchor_sim)
    if s.shape[0] == 0:
        return zero_with_grad(sim)
    with full_precision(s.device):
        return _relative(s, a, margin, beta, max_violation, soft)


def absolute_boost_loss(sim: torch.Tensor, anchor_sim: torch.Tensor, margin: float = DEFAULT_MARGIN,
                        beta: float = 1.0, g: float = 0.5, max_violation: bool = True,
                        soft: bool = False) -> torch.Tensor:
    """L_abs(S, sg(A)) alone (no L_raw): positives γ₊ = γβg above the anchor's, negatives γ₋ = γβ(1-g) below."""
    _check_settings(margin, beta, g, soft=soft)
    s, a = _prepare(sim, anchor_sim)
    if s.shape[0] == 0:
        return zero_with_grad(sim)
    with full_precision(s.device):
        return _absolute(s, a, margin, beta, g, max_violation, soft)


def dbl_relative_loss(sim: torch.Tensor, anchor_sim: torch.Tensor, margin: float = DEFAULT_MARGIN,
                      beta: float = 1.0, max_violation: bool = True, soft: bool = False, *,
                      alpha: float = 1.0) -> torch.Tensor:
    """DBL target loss with relative boosting: L_raw(S) + α·L_rel(S, sg(A))."""
    raw = vse_loss(sim, margin, max_violation)
    return raw + alpha * relative_boost_loss(sim, anchor_sim, margin, beta, max_violation, soft)


def dbl_absolute_loss(sim: torch.Tensor, anchor_sim: torch.Tensor, margin: float = DEFAULT_MARGIN,
                      beta: float = 1.0, g: float = 0.5, max_violation: bool = True, soft: bool = False, *,
                      alpha: float = 1.0) -> torch.Tensor:
    """DBL target loss with absolute boosting: L_raw(S) + α·L_abs(S, sg(A))."""
    raw = vse_loss(sim, margin, max_violation)
    return raw + alpha * absolute_boost_loss(sim, anchor_sim, margin, beta, g, max_violation, soft)


def hardest_after(step: int, warmup_steps: int) -> bool:
    """``max_violation`` for a step: the Sum form (VSE0) for the first ``warmup_steps`` steps, then hardest negatives.

    VSE∞ trains its first epoch on all negatives, as hardest negatives from random
    embeddings give little signal; METHODS.md does not fix the length, so it is a setting.
    """
    if warmup_steps < 0:
        raise MatchingLossError(f"warmup_steps must be >= 0, got {warmup_steps}")
    return step >= warmup_steps


def collapse_value(batch_size: int, margin: float = DEFAULT_MARGIN, *, kind: str = "vse",
                   max_violation: bool = True, alpha: float = 1.0, beta: float = 1.0, g: float = 0.5,
                   soft: bool = False) -> float:
    """The loss when every embedding has collapsed to one vector (S constant; for DBL, A = S too).

    ``kind``: ``"vse"`` (L_raw: 2Bγ Max, 2B(B-1)γ Sum), ``"relative"`` / ``"absolute"``
    (the DBL target loss L_raw + α·L_boost, 2Bγ(1 + αβ) in the Max form without soft
    margins) or ``"infonce"`` (log B; ``margin`` is ignored). See the module docstring.
    """
    if kind not in COLLAPSE_KINDS:
        raise MatchingLossError(f"kind must be one of {COLLAPSE_KINDS}, got {kind!r}")
    if batch_size < 1:
        raise MatchingLossError(f"batch_size must be >= 1, got {batch_size}")
    _check_settings(margin, beta, g, soft=soft)
    b = int(batch_size)
    if kind == "infonce":
        return math.log(b)
    negatives = 1 if max_violation else b - 1  # negatives counted per row / column
    if b == 1:
        negatives = 0
    raw = 2 * b * negatives * margin
    if kind == "vse":
        return raw

    def m(gamma: float, a: float, edge: float) -> float:
        return gamma * math.tanh((edge - a) / gamma) if soft and gamma > 0 else gamma

    gamma = margin * beta
    if kind == "relative":  # every anchor gap is 0
        boost = 2 * b * negatives * max(m(gamma, 0.0, 2.0), 0.0)
    else:  # A_ii = A_ij = 1 for unit-norm collapse; without soft margins any constant works
        g_pos, g_neg = gamma * g, gamma * (1 - g)
        boost = 2 * b * max(m(g_pos, 1.0, 1.0), 0.0) + 2 * b * negatives * max(m(g_neg, -1.0, 1.0), 0.0)
    return raw + alpha * boost


# --------------------------------------------------------------------------- modules
class VSELoss(nn.Module):
    """VSE++ / VSE0 as a loss module returning ``{f"{name}_loss": loss}``; ``max_violation`` per call for warm-up."""

    def __init__(self, margin: float = DEFAULT_MARGIN, max_violation: bool = True, name: str = "vse") -> None:
        super().__init__()
        _check_settings(margin)
        self.margin, self.max_violation, self.name = float(margin), bool(max_violation), name

    def forward(self, sim: torch.Tensor, max_violation: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        mv = self.max_violation if max_violation is None else max_violation
        return {f"{self.name}_loss": vse_loss(sim, self.margin, mv)}

    def extra_repr(self) -> str:
        return f"margin={self.margin}, max_violation={self.max_violation}, name={self.name!r}"


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE with a fixed temperature, returning ``{f"{name}_loss": loss}``."""

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, name: str = "infonce") -> None:
        super().__init__()
        if not temperature > 0:
            raise MatchingLossError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.name = float(temperature), name

    def forward(self, sim: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {f"{self.name}_loss": infonce_loss(sim, self.temperature)}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, name={self.name!r}"


class DBLLoss(nn.Module):
    """DBL target loss: ``{f"{name}_raw_loss": L_raw(S), f"{name}_boost_loss": α·Σ_anchors L_boost(S, sg(A))}``.

    ``anchor_sim`` may be one matrix, a sequence (online regime: every earlier branch) or
    None (the anchor's own training: only the raw term). ``max_violation`` may be given
    per call (warm-up, :func:`hardest_after`).
    """

    def __init__(self, mode: str = "relative", margin: float = DEFAULT_MARGIN, alpha: float = 1.0,
                 beta: float = 1.0, g: float = 0.5, max_violation: bool = True, soft: bool = False,
                 name: str = "dbl") -> None:
        super().__init__()
        if mode not in BOOST_MODES:
            raise MatchingLossError(f"mode must be one of {BOOST_MODES}, got {mode!r}")
        _check_settings(margin, beta, g, soft)
        self.mode, self.margin, self.alpha, self.beta, self.g = mode, float(margin), float(alpha), float(beta), float(g)
        self.max_violation, self.soft, self.name = bool(max_violation), bool(soft), name

    def boost(self, sim: torch.Tensor, anchor_sim: torch.Tensor, max_violation: bool) -> torch.Tensor:
        if self.mode == "relative":
            return relative_boost_loss(sim, anchor_sim, self.margin, self.beta, max_violation, self.soft)
        return absolute_boost_loss(sim, anchor_sim, self.margin, self.beta, self.g, max_violation, self.soft)

    def forward(self, sim: torch.Tensor, anchor_sim: Anchors = None,
                max_violation: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        mv = self.max_violation if max_violation is None else max_violation
        out = {f"{self.name}_raw_loss": vse_loss(sim, self.margin, mv)}
        anchors = [anchor_sim] if isinstance(anchor_sim, torch.Tensor) else list(anchor_sim or [])
        if anchors:
            boost = sum(self.boost(sim, a, mv) for a in anchors)
            out[f"{self.name}_boost_loss"] = self.alpha * boost
        return out

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, margin={self.margin}, alpha={self.alpha}, beta={self.beta}, g={self.g}, "
                f"max_violation={self.max_violation}, soft={self.soft}, name={self.name!r}")
