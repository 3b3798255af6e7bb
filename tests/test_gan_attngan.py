"""AttnGAN and DM-GAN: stages, word attention / dynamic memory, conditioning augmentation, per-scale D and losses."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imagetext.encoders import build_image_encoder
from t2i.gan.attngan import (AttnDiscriminator, AttnGAN, ConditioningAugmentation, WordAttention, image_pyramid,
                             kl_divergence)
from t2i.gan.dmgan import DMGAN, DynamicMemory
from t2i.gan.task import freeze
from t2i.gan.variant import Condition, final_image

COND = 16
VARIANTS = [AttnGAN, DMGAN]


def _model(cls=AttnGAN, **kw):
    torch.manual_seed(0)
    return cls(**{**cls.tiny, "cond_dim": COND, **kw})


def _cond(b: int = 4, encoder=None, t: int = 5) -> Condition:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False  # a shorter caption: words 3, 4 are padding
    return Condition(torch.randn(b, COND, generator=g), torch.randn(b, COND, t, generator=g), mask,
                     image_encoder=encoder, encoder_size=16, class_ids=torch.arange(b))


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_stages_are_coarse_to_fine_and_the_discriminator_has_one_scale_each(cls):
    m = _model(cls, imsize=64, base_size=16)
    z = m.sample_noise(3, generator=torch.Generator().manual_seed(0))
    assert z.shape == (3, 8 + 4)  # [z; ε]
    imgs, maps = m.generator(z, _cond(3), return_maps=True)
    assert [tuple(x.shape) for x in imgs] == [(3, 3, s, s) for s in (16, 32, 64)]
    assert all(x.abs().max() <= 1 for x in imgs) and final_image(imgs) is imgs[-1]
    assert len(maps) == 2 and [tuple(mp["attention"].shape) for mp in maps] == [(3, 5, 16, 16), (3, 5, 32, 32)]
    assert m.discriminator.sizes == [16, 32, 64] and len(m.discriminator.scales) == 3
    # a single-stage model (base_size == imsize) is allowed; a base not dividing imsize is not
    assert len(_model(cls, imsize=16, base_size=16).generator(m.sample_noise(2)[:, :12], _cond(2))) == 1
    with pytest.raises(ValueError, match="base_size"):
        _model(cls, imsize=16, base_size=32)
    with pytest.raises(ValueError, match="noise must be"):
        m.generator(torch.randn(3, 8), _cond(3))


def test_attention_gives_padded_words_zero_weight_and_ignores_their_values():
    att = WordAttention(COND, 6)
    h = torch.randn(4, 6, 5, 5)
    cond = _cond()
    fused, maps = att(h, cond.words, cond.word_mask)
    a = maps["attention"]
    assert fused.shape == (4, 12, 5, 5) and torch.equal(fused[:, :6], h)
    assert torch.allclose(a.sum(1), torch.ones(4, 5, 5), atol=1e-5)  # softmax over words, per pixel
    assert torch.all(a[0, 3:] == 0) and torch.all(a[1:] > 0)
    words = cond.words.clone()
    words[0, :, 3:] = 100.0  # whatever sits in the padding changes nothing
    assert torch.allclose(att(h, words, cond.word_mask)[0], fused, atol=1e-6)
    # the context is the attention-weighted sum of the projected words
    e = att.proj(cond.words)
    ctx = torch.einsum("bct,bthw->bchw", e, a)
    assert torch.allclose(fused[:, 6:], ctx, atol=1e-5)


def test_dynamic_memory_gates_are_in_unit_range_padding_is_ignored_and_output_mixes_r_and_o():
    mem = DynamicMemory(COND, 6, 7)
    h = torch.randn(4, 6, 5, 5)
    cond = _cond()
    out, maps = mem(h, cond.words, cond.word_mask)
    assert out.shape == h.shape and mem.out_channels == 6
    gw, gr, a = maps["write_gate"], maps["response_gate"], maps["attention"]
    assert gw.shape == (4, 5) and gr.shape == (4, 1, 5, 5) and a.shape == (4, 5, 5, 5)
    assert all(((g >= 0) & (g <= 1)).all() for g in (gw, gr))
    assert torch.all(a[0, 3:] == 0) and torch.allclose(a.sum(1), torch.ones(4, 5, 5), atol=1e-5)
    words = cond.words.clone()
    words[0, :, 3:] = -50.0
    assert torch.allclose(mem(h, words, cond.word_mask)[0], out, atol=1e-5)
    # response gate 0 keeps the image features; 1 takes the memory read
    with torch.no_grad():
        mem.response.weight.zero_()
        mem.response.bias.fill_(-1e4)
    assert torch.allclose(mem(h, cond.words, cond.word_mask)[0], h, atol=1e-6)


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_refinement_fusion_is_the_variants(cls):
    m = _model(cls)
    fusion = m.generator.stages[0].fusion
    assert isinstance(fusion, DynamicMemory if cls is DMGAN else WordAttention)
    assert isinstance(m.discriminator, AttnDiscriminator)
    with pytest.raises(ValueError, match="word features"):
        m.generator(m.sample_noise(2), Condition(torch.randn(2, COND)))


def test_kl_is_zero_for_the_standard_normal_finite_and_positive_otherwise():
    z = torch.zeros(3, 4)
    assert kl_divergence(z, z).item() == 0.0
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    kl = kl_divergence(mu, logvar)
    ref = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).mean()
    assert torch.isfinite(kl) and kl > 0 and torch.allclose(kl, ref)
    ca = ConditioningAugmentation(COND, 4)
    with torch.no_grad():
        ca.fc.weight.zero_()
        ca.fc.bias.zero_()
    s, eps = torch.randn(3, COND), torch.randn(3, 4)
    assert ca.kl(s).item() == 0.0 and torch.allclose(ca(s, eps), eps)  # μ = 0, σ = 1: c = ε


def test_noise_carries_epsilon_so_a_seed_fixes_the_sample():
    m = _model()
    m.generator.eval()
    cond = _cond(2)
    z1 = m.sample_noise(2, generator=torch.Generator().manual_seed(5))
    z2 = m.sample_noise(2, generator=torch.Generator().manual_seed(5))
    a = final_image(m.generator(z1, cond))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a, final_image(m.generator(z2, cond)))
    z3 = z1.clone()
    z3[:, 8:] += 1.0  # another ε, same z: another sample
    assert not torch.equal(a, final_image(m.generator(z3, cond)))


def test_generator_batch_norm_statistics_are_buffers():
    m = _model()
    names = [k for k, _ in m.generator.named_buffers()]
    assert any(k.endswith("running_mean") for k in names) and any(k.startswith("init.bn") for k in names)
    before = {k: b.clone() for k, b in m.generator.named_buffers()}
    m.generator(m.sample_noise(4), _cond())
    after = dict(m.generator.named_buffers())
    assert any(not torch.equal(before[k], after[k]) for k in before if "running" in k)


def _count_calls(module):
    calls = []
    module.register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_losses_follow_attngans_formulas_with_one_d_call_each(cls):
    m = _model(cls, damsm_weight=0.0)
    cond = _cond()
    fake = m.generator(m.sample_noise(4), cond)
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    D = m.discriminator
    calls = _count_calls(D)
    d = m.d_losses(D, real, fake, cond)
    assert len(calls) == 1 and "d_ma_gp_loss" not in d and m.ma_gp_k == 0
    g = m.g_losses(D, fake, cond)
    assert len(calls) == 2 and set(g) == {"g_adv_loss", "g_kl_loss"}
    # recompute per scale with separate trunk calls (AttnGAN's): BN uses batch statistics either way
    bce = F.binary_cross_entropy_with_logits
    sent = cond.sentence
    reals = image_pyramid(real, [16, 32])
    assert torch.allclose(reals[0], F.avg_pool2d(real, 2))
    exp_real = exp_fake = exp_mis = exp_g = 0.0
    for s, scale in enumerate(D.scales):
        fr, (ur, cr) = scale(reals[s], sent)
        _, (uf, cf) = scale(fake[s].detach(), sent)
        cw = scale.cond_logits(fr, sent.roll(1, 0))
        one, zero = torch.ones(4), torch.zeros(4)
        exp_real += (bce(ur, one) + bce(cr, one)) / 2
        exp_fake += (bce(uf, zero) + bce(cf, zero)) / 3
        exp_mis += bce(cw, zero) / 3
        exp_g += bce(uf, one) + bce(cf, one)
    assert torch.allclose(d["d_real_loss"], exp_real, atol=1e-5)
    assert torch.allclose(d["d_fake_loss"], exp_fake, atol=1e-5)
    assert torch.allclose(d["d_mismatch_loss"], exp_mis, atol=1e-5)
    assert torch.allclose(g["g_adv_loss"], exp_g, atol=1e-5)
    assert torch.allclose(g["g_kl_loss"], m.generator.ca.kl(sent))
    # a full-size real batch and its explicit pyramid give the same logits
    assert torch.allclose(D(real, sent)[0], D(reals, sent)[0], atol=1e-6)


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_damsm_and_kl_terms_reach_only_g_and_need_the_encoder_only_when_on(cls):
    enc = freeze(build_image_encoder("damsm_cnn_tiny", dim=COND))
    m = _model(cls)
    assert m.damsm_weight == 5.0 and m.kl_weight == 1.0 and m.betas == (0.5, 0.999) and m.lr_g == m.lr_d == 2e-4
    cond = _cond(encoder=enc)
    fake = m.generator(m.sample_noise(4), cond)
    g = m.g_losses(m.discriminator, fake, cond)
    assert {"g_adv_loss", "g_kl_loss", "g_damsm_word_loss", "g_damsm_sent_loss"} <= set(g)
    assert all(torch.isfinite(t) for t in g.values())
    (g["g_damsm_word_loss"] + g["g_damsm_sent_loss"] + g["g_kl_loss"]).backward()
    assert m.generator.ca.fc.weight.grad is not None and m.generator.to_rgb[-1][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters()) and all(p.grad is None for p in m.discriminator.parameters())
    with pytest.raises(ValueError, match="image encoder"):
        m.g_losses(m.discriminator, fake, _cond())
    m0 = _model(cls, damsm_weight=0.0, kl_weight=0.0)
    assert set(m0.g_losses(m0.discriminator, m0.generator(m0.sample_noise(4), _cond()), _cond())) == {"g_adv_loss"}
    with pytest.raises(ValueError, match="16-d"):
        cls(**cls.tiny, cond_dim=8, image_encoder=enc)


def test_dmgan_memory_size_is_configurable_and_checked():
    m = _model(DMGAN, mem_dim=5)
    assert m.generator.stages[0].fusion.mem_word.out_features == 5
    assert _model(DMGAN, mem_dim=None).generator.stages[0].fusion.mem_word.out_features == DMGAN.tiny["ngf"]
    with pytest.raises(ValueError, match="mem_dim"):
        _model(DMGAN, mem_dim=0)
    with pytest.raises(TypeError):
        _model(AttnGAN, mem_dim=4)  # DM-GAN's argument only
