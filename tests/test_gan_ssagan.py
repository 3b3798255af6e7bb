"""SSA-GAN: semantic-aware batch norm with per-block masks, the DAMSM term of the G loss."""
from __future__ import annotations

import pytest
import torch

from imagetext.encoders import build_image_encoder
from t2i.gan.dfgan import DFDiscriminator
from t2i.gan.ssagan import SSAGAN, SemanticBatchNorm
from t2i.gan.task import freeze
from t2i.gan.variant import Condition

COND = 16


def _model(**kw) -> SSAGAN:
    torch.manual_seed(0)
    return SSAGAN(**{**SSAGAN.tiny, "cond_dim": COND, **kw})


def _cond(b: int = 4, encoder=None, t: int = 5) -> Condition:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False  # a shorter caption
    return Condition(torch.randn(b, COND, generator=g), torch.randn(b, COND, t, generator=g), mask,
                     image_encoder=encoder, encoder_size=16)


def _encoder():
    return freeze(build_image_encoder("damsm_cnn_tiny", dim=COND))


def test_masks_per_stage_are_in_unit_range_at_each_blocks_output_side():
    m = _model(imsize=32)
    z = m.sample_noise(3, generator=torch.Generator().manual_seed(0))
    img, masks = m.generator(z, _cond(3), return_masks=True)
    assert img.shape == (3, 3, 32, 32)
    assert [tuple(x.shape) for x in masks] == [(3, 1, 8, 8), (3, 1, 16, 16), (3, 1, 32, 32)]
    assert all(((x >= 0) & (x <= 1)).all() for x in masks)
    assert torch.equal(img, m.generator(z, _cond(3)))  # BN in train mode: same batch, same output


def test_semantic_bn_has_no_affine_starts_as_plain_bn_and_is_modulated_where_the_mask_is():
    m = _model()
    norms = [x for x in m.generator.modules() if isinstance(x, SemanticBatchNorm)]
    assert norms and all(not n.bn.affine and n.bn.running_mean is not None for n in norms)
    n = SemanticBatchNorm(COND, 6)
    h, c = torch.randn(4, 6, 5, 5), torch.randn(4, COND)
    assert torch.allclose(n(h, c, torch.rand(4, 1, 5, 5)), n.bn(h), atol=1e-6)  # γ = β = 0 at init
    with torch.no_grad():
        n.affine.beta[2].bias.fill_(1.0)
        n.affine.gamma[2].bias.fill_(2.0)
    mask = torch.zeros(4, 1, 5, 5)
    mask[..., :2, :] = 1.0
    out, ref = n(h, c, mask), n.bn(h)
    assert torch.allclose(out[..., 2:, :], ref[..., 2:, :], atol=1e-6)  # mask 0: plain BN
    assert torch.allclose(out[..., :2, :], 3 * ref[..., :2, :] + 1, atol=1e-5)  # mask 1: (1 + γ)·BN + β
    # running statistics are buffers (the EMA generator copies them)
    assert any("running_mean" in k for k, _ in m.generator.named_buffers())


def test_discriminator_is_dfgans():
    assert isinstance(_model().discriminator, DFDiscriminator)


def test_damsm_term_is_present_finite_weighted_and_reaches_only_g():
    enc = _encoder()
    m = _model()
    cond = _cond(encoder=enc)
    fake = m.generator(m.sample_noise(4), cond)
    g = m.g_losses(m.discriminator, fake, cond)
    assert {"g_adv_loss", "g_damsm_word_loss", "g_damsm_sent_loss"} <= set(g)
    assert all(torch.isfinite(t) and t > 0 for k, t in g.items() if "damsm" in k)
    sum(t for k, t in g.items() if "damsm" in k).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.generator.parameters())
    assert all(p.grad is None for p in enc.parameters()) and all(p.grad is None for p in m.discriminator.parameters())
    # weight scales the term linearly
    torch.manual_seed(0)
    m2 = _model(damsm_weight=0.1)
    g2 = m2.g_losses(m2.discriminator, fake.detach(), cond)
    g1 = m.g_losses(m.discriminator, fake.detach(), cond)
    assert torch.allclose(g2["g_damsm_sent_loss"], 2 * g1["g_damsm_sent_loss"])


def test_no_image_encoder_is_an_error_only_when_the_damsm_term_is_needed():
    m = _model()  # builds without an encoder (the exported generator is rebuilt this way)
    cond = _cond()
    fake = m.generator(m.sample_noise(4), cond)
    with pytest.raises(ValueError, match="image encoder"):
        m.g_losses(m.discriminator, fake, cond)
    m0 = _model(damsm_weight=0.0)
    assert set(m0.g_losses(m0.discriminator, fake, cond)) == {"g_adv_loss"}
    with pytest.raises(ValueError, match="16-d"):
        SSAGAN(**SSAGAN.tiny, cond_dim=8, image_encoder=_encoder())


def test_noise_in_affine_variant_builds_and_runs():
    m = _model(noise_in_affine=True)
    assert m.generator(m.sample_noise(2), _cond(2)).shape == (2, 3, 16, 16)
