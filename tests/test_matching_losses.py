"""Matching losses (VSE0, VSE++, InfoNCE, DBL relative / absolute) and GPO pooling (METHODS.md section 4)."""
import math

import pytest
import torch
import torch.nn.functional as F

from matching import (GPO, DBLLoss, InfoNCELoss, MatchingLossError, PoolingInputError, VSELoss, absolute_boost_loss,
                      collapse_value, dbl_absolute_loss, dbl_relative_loss, hardest_after, infonce_loss,
                      relative_boost_loss, soft_margin, vse0_loss, vse_pp_loss)

# Hand-computed example (γ = 0.2). Rows are images, columns captions, pairs on the diagonal.
S = [[0.90, 0.50, 0.10],
     [0.72, 0.80, 0.75],
     [0.20, 0.65, 0.70]]
A = [[0.80, 0.60, 0.20],
     [0.50, 0.70, 0.60],
     [0.10, 0.40, 0.90]]
# L_raw, rows [γ + S_ij - S_ii]₊: r0 (0, 0), r1 (.12, .15), r2 (0, .15); columns [γ + S_ij - S_jj]₊:
# c0 (.02, 0), c1 (0, .05), c2 (0, .25). Max: .30 + .32 = .62; Sum: .42 + .32 = .74.
RAW = {True: 0.62, False: 0.74}
# L_rel (β = 1), rows [.2 + (A_ii-A_ij) - (S_ii-S_ij)]₊: r0 (0, 0), r1 (.32, .25), r2 (.5, .65);
# columns [.2 + (A_jj-A_ij) - (S_jj-S_ij)]₊: c0 (.32, .2), c1 (0, .35), c2 (.3, .55).
# Max: .97 + 1.22 = 2.19; Sum: 1.72 + 1.72 = 3.44.
REL = {True: 2.19, False: 3.44}
# L_abs (β = 1, g = 0.4: γ₊ = .08, γ₋ = .12). Positives [.08 + A_ii - S_ii]₊ = (0, 0, .28), twice: .56.
# Negatives [.12 + S_ij - A_ij]₊: (0,1) .02, (0,2) .02, (1,0) .34, (1,2) .27, (2,0) .22, (2,1) .37.
# Max: rows .02 + .34 + .37, columns .34 + .37 + .27 -> 1.71; Sum: 2 x 1.24 = 2.48.
ABS = {True: 0.56 + 1.71, False: 0.56 + 2.48}


def t(x, requires_grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=requires_grad)


@pytest.mark.parametrize("mv", [True, False])
def test_hand_values(mv):
    raw_fn = vse_pp_loss if mv else vse0_loss
    assert raw_fn(t(S)).item() == pytest.approx(RAW[mv])
    assert relative_boost_loss(t(S), t(A), 0.2, max_violation=mv).item() == pytest.approx(REL[mv])
    assert dbl_relative_loss(t(S), t(A), 0.2, max_violation=mv).item() == pytest.approx(RAW[mv] + REL[mv])
    assert absolute_boost_loss(t(S), t(A), 0.2, g=0.4, max_violation=mv).item() == pytest.approx(ABS[mv])
    assert dbl_absolute_loss(t(S), t(A), 0.2, g=0.4, max_violation=mv).item() == pytest.approx(RAW[mv] + ABS[mv])
    # α scales the boost term only; β scales the boost margins (β = 0 with A = S: nothing to beat)
    assert dbl_relative_loss(t(S), t(A), 0.2, max_violation=mv, alpha=0.5).item() == pytest.approx(
        RAW[mv] + 0.5 * REL[mv])
    assert relative_boost_loss(t(S), t(S), 0.2, beta=0.0, max_violation=mv).item() == pytest.approx(0.0)


def test_directions_are_both_counted():
    # transposing swaps the two directions; the total is unchanged and each direction is non-trivial
    s, a = t(S), t(A)
    for fn in (lambda x, y: relative_boost_loss(x, y), lambda x, y: absolute_boost_loss(x, y, g=0.4),
               lambda x, y: vse_pp_loss(x)):
        assert fn(s.T, a.T).item() == pytest.approx(fn(s, a).item())
    # the relative total is rows (.97) plus columns (1.22), neither direction alone
    assert relative_boost_loss(s, a).item() == pytest.approx(0.97 + 1.22)
    assert relative_boost_loss(s, a).item() != pytest.approx(0.97)


def test_soft_margin_formula():
    a = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64)
    for gamma, edge in ((0.2, 2.0), (0.1, 1.0), (0.05, 1.0)):
        ref = 2 * gamma / (1 + torch.exp((2 / gamma) * (a - edge))) - gamma
        assert torch.allclose(soft_margin(a, gamma, edge), ref, atol=1e-12)
    assert soft_margin(torch.tensor(1.0), 0.1, 1.0).item() == 0.0


def test_soft_margin_hand_values():
    # absolute, g = 0.5: γ₊ = γ₋ = .1. Anchor positive .99 near the bound: m₊ = .1·tanh(.01/.1).
    s = t([[0.90, 0.30], [0.40, 0.95]])
    a = t([[0.95, 0.00], [0.10, 0.99]])
    mp = [0.1 * math.tanh((1 - 0.95) / 0.1), 0.1 * math.tanh((1 - 0.99) / 0.1)]
    pos = max(mp[0] + 0.95 - 0.90, 0) + max(mp[1] + 0.99 - 0.95, 0)
    mn01, mn10 = 0.1 * math.tanh((1 + 0.0) / 0.1), 0.1 * math.tanh((1 + 0.1) / 0.1)
    neg = max(mn01 + 0.30 - 0.00, 0) + max(mn10 + 0.40 - 0.10, 0)  # B = 2: one negative per row / column
    assert absolute_boost_loss(s, a, 0.2, soft=True).item() == pytest.approx(2 * pos + 2 * neg)
    assert absolute_boost_loss(s, a, 0.2, soft=False).item() == pytest.approx(
        2 * (0.15 + 0.14) + 2 * (0.4 + 0.4))
    # relative, anchor gaps 1.8 (edge 2): m = .2·tanh(.2/.2); target gaps .6 / .55 (rows) .5 / .65 (columns)
    a2 = t([[0.9, -0.9], [-0.9, 0.9]])
    m = 0.2 * math.tanh(1.0)
    want = sum(max(m + 1.8 - g, 0) for g in (0.6, 0.55, 0.5, 0.65))
    assert relative_boost_loss(s, a2, 0.2, soft=True).item() == pytest.approx(want)
    assert dbl_relative_loss(s, a2, 0.2, soft=True).item() == pytest.approx(want + vse_pp_loss(s).item())


@pytest.mark.parametrize("fn", [dbl_relative_loss, dbl_absolute_loss, relative_boost_loss, absolute_boost_loss])
def test_anchor_gets_no_gradient(fn):
    torch.manual_seed(0)
    s = torch.randn(4, 4, requires_grad=True)
    a = torch.randn(4, 4, requires_grad=True)
    for soft in (False, True):
        fn(s, a, soft=soft).backward()
        assert a.grad is None
        assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
        s.grad = None


def test_zero_when_target_beats_anchor():
    anchor = t([[0.6, 0.1, 0.2, 0.0], [0.3, 0.5, 0.1, 0.2], [0.0, 0.2, 0.7, 0.1], [0.2, 0.1, 0.0, 0.4]])
    eye = torch.eye(4, dtype=torch.float64)
    # relative: every target gap = anchor gap + .25 > γβ = .2 (and the raw gaps are >= .25 > γ too)
    s_rel = anchor + 0.25 * eye
    assert relative_boost_loss(s_rel, anchor).item() == 0.0
    assert dbl_relative_loss(s_rel, anchor, max_violation=False).item() == 0.0
    # just short of the margin (+.15): no longer zero
    assert relative_boost_loss(anchor + 0.15 * eye, anchor).item() > 0
    # absolute (γ₊ = γ₋ = .1): positives .1 above the anchor's, negatives .1 below
    s_abs = anchor + 0.1 * eye - 0.1 * (1 - eye)
    assert absolute_boost_loss(s_abs, anchor, max_violation=False).item() == pytest.approx(0.0, abs=1e-12)
    assert absolute_boost_loss(anchor + 0.05 * eye, anchor).item() > 0


def test_vse_pp_equals_loop_reference():
    torch.manual_seed(1)
    s = torch.randn(6, 6, dtype=torch.float64)
    ref_max = ref_sum = 0.0
    for i in range(6):
        row = [max(0.0, 0.2 + s[i, j].item() - s[i, i].item()) for j in range(6) if j != i]
        col = [max(0.0, 0.2 + s[j, i].item() - s[i, i].item()) for j in range(6) if j != i]
        ref_max += max(row) + max(col)
        ref_sum += sum(row) + sum(col)
    assert vse_pp_loss(s).item() == pytest.approx(ref_max)
    assert vse0_loss(s).item() == pytest.approx(ref_sum)


def test_infonce_equals_cross_entropy_reference():
    torch.manual_seed(2)
    s = torch.randn(5, 5, dtype=torch.float64)
    tau = 0.1
    logp_rows = torch.log_softmax(s / tau, dim=1).diagonal()
    logp_cols = torch.log_softmax(s / tau, dim=0).diagonal()
    ref = -(logp_rows.mean() + logp_cols.mean()) / 2
    assert infonce_loss(s, tau).item() == pytest.approx(ref.item())
    target = torch.arange(5)
    assert infonce_loss(s, tau).item() == pytest.approx(
        ((F.cross_entropy(s / tau, target) + F.cross_entropy(s.T / tau, target)) / 2).item())


@pytest.mark.parametrize("b", [1, 2, 5])
def test_collapse_value_equals_loss_on_identical_embeddings(b):
    v = F.normalize(torch.randn(1, 8, dtype=torch.float64), dim=1)
    img, txt = v.expand(b, 8), v.expand(b, 8)
    s = img @ txt.T  # all ones
    assert collapse_value(b, 0.2) == pytest.approx(2 * b * 0.2 if b > 1 else 0.0)
    for mv in (True, False):
        raw_fn = vse_pp_loss if mv else vse0_loss
        assert raw_fn(s).item() == pytest.approx(collapse_value(b, 0.2, max_violation=mv))
        for soft in (False, True):
            kw = dict(max_violation=mv, soft=soft, alpha=0.7, beta=1.5)
            assert dbl_relative_loss(s, s, 0.2, 1.5, mv, soft, alpha=0.7).item() == pytest.approx(
                collapse_value(b, 0.2, kind="relative", **kw))
            assert dbl_absolute_loss(s, s, 0.2, 1.5, 0.3, mv, soft, alpha=0.7).item() == pytest.approx(
                collapse_value(b, 0.2, kind="absolute", g=0.3, **kw))
    assert infonce_loss(s, 0.05).item() == pytest.approx(collapse_value(b, kind="infonce"))
    if b > 1:  # the Max form without soft margins: 2Bγ(1 + αβ) for both boosting forms
        assert collapse_value(b, 0.2, kind="absolute", alpha=0.5) == pytest.approx(2 * b * 0.2 * 1.5)


def test_modules_return_named_loss_terms():
    torch.manual_seed(3)
    s, a1, a2 = torch.randn(4, 4), torch.randn(4, 4), torch.randn(4, 4)
    out = DBLLoss("absolute", alpha=0.5)(s, [a1, a2])
    assert set(out) == {"dbl_raw_loss", "dbl_boost_loss"}
    want = 0.5 * (absolute_boost_loss(s, a1) + absolute_boost_loss(s, a2))
    assert torch.allclose(out["dbl_boost_loss"], want)
    assert torch.allclose(sum(DBLLoss()(s, a1).values()), dbl_relative_loss(s, a1))
    assert set(DBLLoss()(s)) == {"dbl_raw_loss"}  # no anchor: the anchor's own training
    assert torch.allclose(VSELoss()(s, max_violation=False)["vse_loss"], vse0_loss(s))
    assert torch.allclose(InfoNCELoss(0.1)(s)["infonce_loss"], infonce_loss(s, 0.1))
    assert [hardest_after(k, 2) for k in range(4)] == [False, False, True, True]


def test_bad_inputs_are_clear_errors():
    s = torch.zeros(3, 3)
    with pytest.raises(MatchingLossError, match="square"):
        vse_pp_loss(torch.zeros(3, 4))
    with pytest.raises(MatchingLossError, match="anchor_sim has shape"):
        dbl_relative_loss(s, torch.zeros(4, 4))
    with pytest.raises(MatchingLossError, match="NaN"):
        dbl_absolute_loss(s, torch.full((3, 3), float("nan")))
    with pytest.raises(MatchingLossError, match="floating"):
        infonce_loss(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(MatchingLossError, match="g must"):
        dbl_absolute_loss(s, s, g=1.5)
    with pytest.raises(ValueError):
        DBLLoss("sideways")
    with pytest.raises(MatchingLossError, match="kind"):
        collapse_value(4, kind="nope")


# --------------------------------------------------------------------------- GPO
@pytest.fixture(scope="module")
def gpo():
    torch.manual_seed(4)
    return GPO().eval()


def test_gpo_shapes_and_weights(gpo):
    x = torch.randn(3, 7, 16)
    lengths = torch.tensor([7, 3, 1])
    out, w = gpo(x, lengths, return_weights=True)
    assert out.shape == (3, 16) and w.shape == (3, 7)
    assert torch.allclose(w.sum(1), torch.ones(3))
    assert (w[1, 3:] == 0).all() and (w[2, 1:] == 0).all()
    assert torch.allclose(out[2], x[2, 0])  # one item: θ = 1 on it
    assert torch.allclose(gpo(x), gpo(x, torch.tensor([7, 7, 7])))


def test_gpo_padding_never_matters(gpo):
    torch.manual_seed(5)
    x = torch.randn(2, 6, 8)
    lengths = torch.tensor([4, 2])
    ref = torch.stack([gpo(x[:1, :4]), gpo(x[1:, :2])]).squeeze(1)
    junk = x.clone()
    junk[0, 4:] = 1e6
    junk[1, 2:] = float("nan")
    assert torch.allclose(gpo(junk, lengths), ref, atol=1e-6)
    mask = torch.arange(6)[None] < lengths[:, None]
    assert torch.allclose(gpo(junk, mask=mask), ref, atol=1e-6)
    # padding at arbitrary places through a mask
    scattered = torch.full((1, 6, 8), float("nan"))
    scattered[0, [1, 3, 4, 5]] = x[0, :4]
    assert torch.allclose(gpo(scattered, mask=~torch.isnan(scattered[..., 0])), ref[:1], atol=1e-6)


def test_gpo_is_permutation_invariant(gpo):
    torch.manual_seed(6)
    x = torch.randn(2, 9, 8)
    lengths = torch.tensor([9, 5])
    perm = torch.randperm(5)
    y = x.clone()
    y[0] = x[0, torch.randperm(9)]
    y[1, :5] = x[1, perm]
    assert torch.allclose(gpo(x, lengths), gpo(y, lengths), atol=1e-6)


def test_gpo_gradients_finite_and_zero_on_padding():
    torch.manual_seed(7)
    gpo = GPO()
    x = torch.randn(2, 5, 4)
    x[1, 3:] = float("nan")
    x.requires_grad_(True)
    gpo(x, torch.tensor([5, 3])).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1, 3:] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in gpo.parameters())


def test_gpo_bad_inputs(gpo):
    x = torch.randn(2, 4, 3)
    with pytest.raises(PoolingInputError, match="<= K"):
        gpo(x, torch.tensor([5, 2]))
    with pytest.raises(PoolingInputError, match="at least one"):
        gpo(x, mask=torch.tensor([[True] * 4, [False] * 4]))
    with pytest.raises(PoolingInputError, match=r"\(B, K, D\)"):
        gpo(torch.randn(2, 4))
