"""Tests of imagetext.losses against independent, loop-based references."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imagetext.losses import (ClassifierHead, ClipLoss, DamsmLoss, LossInputError, SupConLoss, UniClLoss,
                              classification_loss, clip_loss, damsm_sentence_loss, damsm_sentence_scores,
                              damsm_word_loss, damsm_word_scores, supcon_loss, unicl_loss)

DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: 1e-10, torch.float32: 1e-6}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float64, seed=0, grad=False):
    x = torch.randn(*shape, generator=gen(seed), dtype=torch.float64).to(dtype)
    return x.requires_grad_(grad)


def close(a: torch.Tensor, b, tol: float = 1e-6) -> None:
    a = torch.as_tensor(a).detach()
    b = torch.as_tensor(b, dtype=torch.float64).detach()
    assert abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b))), (float(a), float(b))


# ------------------------------------------------------------------ references
def nt_xent_reference(v1: torch.Tensor, v2: torch.Tensor, t: float) -> torch.Tensor:
    """SimCLR NT-Xent, one anchor at a time: positive = the other view, denominator all k != i."""
    z = torch.cat([v1, v2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n, b = z.shape[0], v1.shape[0]
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -(float(z[i] @ z[j]) / t - math.log(denom))
    return torch.tensor(total / n, dtype=torch.float64)


def supcon_reference(f, weights_fn, t, contrast=None):
    """Loop SupCon: weights_fn(i, j) gives the positive weight; self excluded in-set."""
    z = f.double() / f.double().norm(dim=1, keepdim=True)
    c = z if contrast is None else contrast.double() / contrast.double().norm(dim=1, keepdim=True)
    losses = []
    for i in range(z.shape[0]):
        cand = [k for k in range(c.shape[0]) if contrast is not None or k != i]
        log_den = math.log(sum(math.exp(float(z[i] @ c[k]) / t) for k in cand))
        ws = {k: weights_fn(i, k) for k in cand}
        wsum = sum(ws.values())
        if wsum == 0:
            continue
        losses.append(-sum(w * (float(z[i] @ c[k]) / t - log_den) for k, w in ws.items() if w > 0) / wsum)
    return torch.tensor(sum(losses) / len(losses) if losses else 0.0, dtype=torch.float64)


def sets(multi_hot):
    return [set(torch.nonzero(row).flatten().tolist()) for row in multi_hot]


def rule_weight(a: set, b: set, rule: str) -> float:
    if not a or not b:
        return 0.0
    if rule == "any":
        return float(bool(a & b))
    if rule == "exact":
        return float(a == b)
    return len(a & b) / len(a | b)


# ------------------------------------------------------------------ SupCon
@pytest.mark.parametrize("dtype", DTYPES)
def test_supcon_two_views_unique_labels_is_nt_xent(dtype):
    b, t = 6, 0.1
    v1, v2 = randn(b, 8, dtype=dtype, seed=1), randn(b, 8, dtype=dtype, seed=2)
    labels = torch.cat([torch.arange(b), torch.arange(b)])
    loss = supcon_loss(torch.cat([v1, v2]), labels, temperature=t)
    assert loss.dtype == dtype
    close(loss, nt_xent_reference(v1, v2, t), TOL[dtype])
    # the same through ids with unknown (-1) labels
    loss_ids = supcon_loss(torch.cat([v1, v2]), torch.full((2 * b,), -1), temperature=t, ids=labels)
    close(loss_ids, nt_xent_reference(v1, v2, t), TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_supcon_cross_modal_unique_labels_is_infonce(dtype):
    n, t = 7, 0.2
    a, c = randn(n, 5, dtype=dtype, seed=3), randn(n, 5, dtype=dtype, seed=4)
    loss = supcon_loss(a, torch.arange(n), t, contrast=c, contrast_labels=torch.arange(n))
    za, zc = F.normalize(a.double(), dim=1), F.normalize(c.double(), dim=1)
    close(loss, F.cross_entropy(za @ zc.T / t, torch.arange(n)), TOL[dtype])


def test_supcon_hand_computed():
    # unit vectors at angles 0, 90, 180 deg; labels 0, 0, 1; t = 1
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], dtype=torch.float64)
    e = math.e
    # anchor 0: sims to 1, 2 are 0, -1 -> -log(e^0 / (e^0 + e^-1))
    l0 = -math.log(1 / (1 + 1 / e))
    # anchor 1: sims to 0, 2 are 0, 0 -> -log(1/2)
    l1 = math.log(2)
    # anchor 2 has no positive: skipped
    close(supcon_loss(f, torch.tensor([0, 0, 1]), temperature=1.0), (l0 + l1) / 2, 1e-12)


def test_supcon_repeated_labels_matches_loop():
    f = randn(10, 4, seed=5)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0, -1, -1])
    lab = labels.tolist()
    ref = supcon_reference(f, lambda i, k: float(lab[i] == lab[k] and lab[i] >= 0), 0.3)
    close(supcon_loss(f, labels, 0.3), ref, 1e-10)


@pytest.mark.parametrize("rule", ["any", "exact", "jaccard"])
@pytest.mark.parametrize("cross", [False, True])
def test_supcon_multi_hot_rules_match_loop(rule, cross):
    y = torch.tensor([[1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0],
                      [1, 1, 1, 1], [0, 0, 1, 0]])
    f = randn(len(y), 6, seed=6)
    c = randn(len(y), 6, seed=7) if cross else None
    ys = sets(y)
    ref = supcon_reference(f, lambda i, k: rule_weight(ys[i], ys[k], rule), 0.5, contrast=c)
    kw = dict(contrast=c, contrast_labels=y if cross else None)
    loss = supcon_loss(f, y.bool() if rule == "any" else y, 0.5, rule, **kw)
    close(loss, ref, 1e-10)


def test_supcon_rules_differ_and_single_label_rules_coincide():
    y = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1]])
    f = randn(4, 3, seed=8)
    vals = {r: float(supcon_loss(f, y, 0.5, r)) for r in ("any", "exact", "jaccard")}
    assert len(set(vals.values())) == 3
    lab = torch.tensor([0, 1, 0, 1])
    assert len({float(supcon_loss(f, lab, 0.5, r)) for r in ("any", "exact", "jaccard")}) == 1


@pytest.mark.parametrize("case", ["unique", "unknown", "empty_sets", "single", "cross"])
def test_supcon_no_positive_returns_zero_with_grad(case):
    f = randn(5, 3, seed=9, grad=True)
    c = None
    if case == "unique":
        loss = supcon_loss(f, torch.arange(5))
    elif case == "unknown":
        loss = supcon_loss(f, torch.full((5,), -1))
    elif case == "empty_sets":
        loss = supcon_loss(f, torch.zeros(5, 3), positives="exact")
    elif case == "single":
        loss = supcon_loss(f[:1], torch.tensor([0]))
    else:
        c = randn(4, 3, seed=10, grad=True)
        loss = supcon_loss(f, torch.arange(5), contrast=c, contrast_labels=torch.arange(10, 14))
    assert loss.dim() == 0 and float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    for x in (f, c):
        if x is not None:
            assert x.grad is not None and torch.isfinite(x.grad).all() and (x.grad == 0).all()


def test_supcon_permutation_invariance():
    f = randn(12, 5, seed=11)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 0, -1, 4, 1])
    perm = torch.randperm(12, generator=gen(1))
    close(supcon_loss(f[perm], labels[perm]), supcon_loss(f, labels), 1e-12)
    c = randn(12, 5, seed=12)
    a = supcon_loss(f, labels, contrast=c, contrast_labels=labels)
    p2 = torch.randperm(12, generator=gen(2))
    close(supcon_loss(f[perm], labels[perm], contrast=c[p2], contrast_labels=labels[p2]), a, 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_supcon_duplicated_features_have_finite_gradients(dtype):
    base = randn(3, 4, dtype=dtype, seed=13)
    f = torch.cat([base, base, base[:1]]).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    loss = supcon_loss(f, labels, 0.05)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    for rule in ("any", "exact", "jaccard"):
        g = f.detach().clone().requires_grad_(True)
        supcon_loss(g, F.one_hot(labels, 3), 0.05, rule).backward()
        assert torch.isfinite(g.grad).all()


def test_supcon_extreme_temperature_is_stable():
    f = randn(8, 4, seed=14)
    loss = supcon_loss(f, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), temperature=1e-4)
    assert torch.isfinite(loss)


def test_supcon_ids_give_unknown_samples_their_pair():
    t = 0.5
    txt, img = randn(4, 3, seed=15), randn(4, 3, seed=16)
    labels = torch.tensor([0, 0, -1, -1])
    ids = torch.arange(4)
    loss = supcon_loss(txt, labels, t, contrast=img, contrast_labels=labels, ids=ids, contrast_ids=ids)
    lab = labels.tolist()
    ref = supcon_reference(txt, lambda i, k: float((lab[i] == lab[k] and lab[i] >= 0) or i == k), t, contrast=img)
    close(loss, ref, 1e-10)
    # without ids the unknown anchors are skipped
    ref2 = supcon_reference(txt, lambda i, k: float(lab[i] == lab[k] and lab[i] >= 0), t, contrast=img)
    close(supcon_loss(txt, labels, t, contrast=img, contrast_labels=labels), ref2, 1e-10)


def test_supcon_temperature_tensor_gets_gradient_and_float32_default():
    f = torch.randn(6, 4, generator=gen(17))
    t = torch.tensor(0.2, requires_grad=True)
    loss = supcon_loss(f, torch.tensor([0, 0, 1, 1, 2, 2]), t)
    loss.backward()
    assert loss.dtype == torch.float32 and t.grad is not None and torch.isfinite(t.grad)


def test_supcon_half_and_autocast_compute_in_float32():
    f = torch.randn(6, 4, generator=gen(18))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    ref = supcon_loss(f, labels)
    out = supcon_loss(f.bfloat16().float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = supcon_loss(f.bfloat16().float(), labels)
    assert supcon_loss(f.bfloat16(), labels).dtype == torch.float32
    assert auto.dtype == torch.float32 and abs(float(auto) - float(out)) < 1e-6
    assert abs(float(out) - float(ref)) < 0.05


def test_supcon_bad_input():
    f = torch.randn(4, 3)
    with pytest.raises(LossInputError, match="integer"):
        supcon_loss(f, torch.zeros(4))
    with pytest.raises(LossInputError, match="-1 for unknown"):
        supcon_loss(f, torch.tensor([0, 1, -2, 0]))
    with pytest.raises(LossInputError, match="positives"):
        supcon_loss(f, torch.zeros(4, 2), positives="some")
    with pytest.raises(LossInputError, match="contrast_labels"):
        supcon_loss(f, torch.arange(4), contrast=f)
    with pytest.raises(LossInputError, match="same kind"):
        supcon_loss(f, torch.arange(4), contrast=f, contrast_labels=torch.zeros(4, 2))
    with pytest.raises(LossInputError, match="temperature"):
        supcon_loss(f, torch.arange(4), temperature=0.0)
    with pytest.raises(LossInputError, match="0/1"):
        supcon_loss(f, torch.full((4, 2), 2))


def test_supcon_module_terms():
    a, b = randn(6, 4, seed=19, grad=True), randn(6, 4, seed=20)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    m = SupConLoss(temperature=0.2, name="supcon_it")
    out = m(a, labels, b, labels)
    assert list(out) == ["supcon_it_loss"]
    both = (supcon_loss(a, labels, 0.2, contrast=b, contrast_labels=labels)
            + supcon_loss(b, labels, 0.2, contrast=a, contrast_labels=labels)) / 2
    close(out["supcon_it_loss"], both, 1e-12)
    off = SupConLoss(weight=0)(a, labels)["supcon_loss"]
    assert float(off.detach()) == 0 and off.requires_grad


# ------------------------------------------------------------------ DAMSM
def damsm_word_reference(regions, words, lengths, g1, g2, root=True):
    """Per (caption, image) pair, on the caption's real words only."""
    v = regions.double().flatten(2)
    out = torch.zeros(words.shape[0], v.shape[0], dtype=torch.float64)
    for i in range(words.shape[0]):
        e = words[i, :, : int(lengths[i])].double()                 # D x T_i
        for j in range(v.shape[0]):
            s = e.T @ v[j]                                           # T_i x L
            s = torch.softmax(s, dim=0)                              # over words
            alpha = torch.softmax(g1 * s, dim=1)                     # over regions
            c = alpha @ v[j].T                                       # T_i x D
            cos = F.cosine_similarity(c, e.T, dim=1)
            r = torch.log(torch.exp(g2 * cos).sum())
            out[i, j] = r / g2 if root else r
    return out


def damsm_inputs(b=4, d=6, t=5, h=3, seed=0, grad=False):
    regions = randn(b, d, h, h, seed=seed, grad=grad)
    words = randn(b, d, t, seed=seed + 1, grad=grad)
    sentence = randn(b, d, seed=seed + 2, grad=grad)
    image = randn(b, d, seed=seed + 3, grad=grad)
    lengths = torch.tensor([t, 2, 3, 1][:b])
    return regions, words, sentence, image, lengths


def test_damsm_word_scores_match_loop_and_ignore_padding():
    regions, words, _, _, lengths = damsm_inputs()
    ref = damsm_word_reference(regions, words, lengths, 4.0, 5.0)
    got = damsm_word_scores(regions, words, lengths)
    assert got.shape == (4, 4)
    assert torch.allclose(got, ref, atol=1e-10)
    # garbage in the padding changes nothing; (B, D, L) regions and chunking give the same
    padded = words.clone()
    for i, n in enumerate(lengths.tolist()):
        padded[i, :, n:] = 1e3
    assert torch.allclose(damsm_word_scores(regions.flatten(2), padded, lengths, chunk_size=3), ref, atol=1e-10)
    mask = torch.arange(5)[None] < lengths[:, None]
    assert torch.allclose(damsm_word_scores(regions, padded, words_mask=mask), ref, atol=1e-10)
    # AttnGAN code scale (no 1/gamma2) and fewer images than captions
    code = damsm_word_scores(regions[:2], words, lengths, lse_root=False)
    assert code.shape == (4, 2) and torch.allclose(code, 5.0 * ref[:, :2], atol=1e-9)


def test_damsm_losses_shapes_finite_and_gradients():
    regions, words, sentence, image, lengths = damsm_inputs(grad=True)
    out = DamsmLoss()(regions, words, sentence, image, lengths, class_ids=torch.tensor([0, 1, 0, 2]))
    assert set(out) == {"damsm_word_loss", "damsm_sent_loss"}
    total = sum(v for k, v in out.items() if k.endswith("_loss"))
    assert total.dim() == 0 and torch.isfinite(total)
    total.backward()
    for x in (regions, words, sentence, image):
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # padding positions of words get no gradient
    assert (words.grad[1, :, 2:] == 0).all()
    # float32 too
    r32 = [x.detach().float() for x in (regions, words)]
    assert damsm_word_loss(*r32, lengths).dtype == torch.float32


def test_damsm_sentence_loss_and_same_class_masking_by_hand():
    _, _, sentence, image, _ = damsm_inputs(b=3, seed=21)
    g3 = 10.0
    cos = F.cosine_similarity(sentence[:, None], image[None], dim=2)    # caption x image
    s = g3 * cos

    def ce_row(row, keep, target):
        return -(row[target] - torch.logsumexp(row[keep], 0))

    all3 = [0, 1, 2]
    plain = sum(ce_row(s[i], all3, i) + ce_row(s[:, i], all3, i) for i in range(3)) / 3
    close(damsm_sentence_loss(sentence, image), plain, 1e-10)
    # classes 0, 0, 1: pair (0, 1) is no negative for either, in both directions
    keep = {0: [0, 2], 1: [1, 2], 2: [0, 1, 2]}
    masked = sum(ce_row(s[i], keep[i], i) + ce_row(s[:, i], keep[i], i) for i in range(3)) / 3
    got = damsm_sentence_loss(sentence, image, class_ids=torch.tensor([0, 0, 1]))
    close(got, masked, 1e-10)
    assert abs(float(got) - float(plain)) > 1e-6
    # -1 (unknown) masks nothing
    close(damsm_sentence_loss(sentence, image, class_ids=torch.tensor([-1, -1, 1])), plain, 1e-10)
    # word loss masks the same way
    regions, words, _, _, lengths = damsm_inputs(b=3, seed=22)
    w = 10.0 * damsm_word_scores(regions, words, lengths)
    wm = sum(ce_row(w[i], keep[i], i) + ce_row(w[:, i], keep[i], i) for i in range(3)) / 3
    close(damsm_word_loss(regions, words, lengths, class_ids=torch.tensor([0, 0, 1])), wm, 1e-10)


def test_damsm_aligned_beats_shuffled():
    b, d, t, l = 6, 8, 4, 9
    regions = randn(b, d, l, seed=23)
    # each caption's words copy regions of its own image
    words = torch.stack([regions[i, :, [0, 3, 5, 7]] for i in range(b)])
    lengths = torch.full((b,), t)
    sentence, image = randn(b, d, seed=24), None
    image = sentence.clone()
    perm = torch.roll(torch.arange(b), 1)
    loss = DamsmLoss()
    aligned = loss(regions, words, sentence, image, lengths)
    shuffled = loss(regions[perm], words, sentence, image[perm], lengths)
    for k in aligned:
        assert float(aligned[k]) < float(shuffled[k]), k


def test_damsm_bad_input():
    regions, words, sentence, image, lengths = damsm_inputs()
    with pytest.raises(LossInputError, match="at least one word"):
        damsm_word_scores(regions, words, torch.tensor([1, 0, 2, 2]))
    with pytest.raises(LossInputError, match="exceeds"):
        damsm_word_scores(regions, words, torch.tensor([1, 9, 2, 2]))
    with pytest.raises(LossInputError, match="as many captions"):
        damsm_word_loss(regions[:3], words, lengths)
    with pytest.raises(LossInputError, match="class_ids"):
        damsm_sentence_loss(sentence, image, class_ids=torch.zeros(4, 2, dtype=torch.long))


# ------------------------------------------------------------------ CLIP
def test_clip_loss_matches_reference_and_module():
    img, txt = randn(5, 4, seed=25), randn(5, 4, seed=26)
    s = 1 / 0.07
    logits = s * F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T
    ref = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    close(clip_loss(img, txt, s), ref, 1e-10)
    m = ClipLoss()
    close(m.logit_scale, math.log(1 / 0.07), 1e-7)
    out = m(img.float(), txt.float())
    assert set(out) == {"clip_loss", "logit_scale"} and not out["logit_scale"].requires_grad
    close(out["clip_loss"], ref, 1e-5)
    out["clip_loss"].backward()
    assert m.logit_scale.grad is not None and torch.isfinite(m.logit_scale.grad)


def test_clip_scale_is_clamped_at_100():
    m = ClipLoss()
    with torch.no_grad():
        m.logit_scale.fill_(10.0)
    assert float(m(torch.randn(3, 4), torch.randn(3, 4))["logit_scale"]) == pytest.approx(100.0)
    m.clamp_()
    assert float(m.logit_scale.detach()) == pytest.approx(math.log(100.0))
    fixed = ClipLoss(init_temperature=0.5, learnable=False)
    assert not list(fixed.parameters()) and float(fixed.scale()) == pytest.approx(2.0)


# ------------------------------------------------------------------ label baselines
def test_unicl_unique_labels_equal_clip_and_loop_reference():
    img, txt = randn(6, 4, seed=27), randn(6, 4, seed=28)
    close(unicl_loss(img, txt, torch.arange(6), 5.0), clip_loss(img, txt, 5.0), 1e-12)
    labels = torch.tensor([0, 1, 0, -1, 1, 0])
    lab = labels.tolist()
    zi, zt = F.normalize(img, dim=1), F.normalize(txt, dim=1)
    logits = 5.0 * zi @ zt.T
    pos = [[k for k in range(6) if k == i or (lab[k] == lab[i] and lab[i] >= 0)] for i in range(6)]
    i2t = sum(-sum(float(logits[i, k] - torch.logsumexp(logits[i], 0)) for k in pos[i]) / len(pos[i])
              for i in range(6)) / 6
    t2i = sum(-sum(float(logits[k, i] - torch.logsumexp(logits[:, i], 0)) for k in pos[i]) / len(pos[i])
              for i in range(6)) / 6
    close(unicl_loss(img, txt, labels, 5.0), (i2t + t2i) / 2, 1e-10)
    m = UniClLoss()
    out = m(img.float(), txt.float(), labels)
    assert set(out) == {"unicl_loss", "logit_scale"}
    out["unicl_loss"].backward()
    assert torch.isfinite(m.logit_scale.grad)


def test_unicl_multi_hot():
    img, txt = randn(4, 3, seed=29), randn(4, 3, seed=30)
    y = torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]])
    loss = unicl_loss(img, txt, y, 3.0, positives="exact")
    close(loss, unicl_loss(img, txt, torch.tensor([0, 1, -1, 0]), 3.0), 1e-12)


def test_classification_head_single_and_multi_label():
    torch.manual_seed(0)
    f = torch.randn(5, 4, requires_grad=True)
    head = ClassifierHead(4, 3)
    labels = torch.tensor([0, 2, -1, 1, 2])
    out = head(f, labels)
    assert set(out) == {"ce_loss", "ce_accuracy"}
    logits = head.head(f)
    close(out["ce_loss"], F.cross_entropy(logits[[0, 1, 3, 4]], labels[[0, 1, 3, 4]]), 1e-6)
    out["ce_loss"].backward()
    assert torch.isfinite(f.grad).all()
    none = classification_loss(logits, torch.full((5,), -1))
    assert float(none.detach()) == 0 and none.requires_grad
    ml = ClassifierHead(4, 3, multi_label=True, name="bce")
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1]])
    out = ml(f, y)
    close(out["bce_loss"], F.binary_cross_entropy_with_logits(ml.head(f), y.float()), 1e-6)
    with pytest.raises(LossInputError, match="multi-hot"):
        ml(f, labels)
    with pytest.raises(LossInputError, match="out of range"):
        head(f, torch.tensor([0, 1, 2, 3, 0]))


def test_damsm_sentence_scores_shape():
    assert damsm_sentence_scores(torch.randn(3, 4), torch.randn(5, 4)).shape == (3, 5)
