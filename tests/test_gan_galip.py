"""GALIP: the CLIP bridge generator, the CLIP-feature discriminator, the shared frozen tower, the losses."""
from __future__ import annotations

import contextlib
from typing import List

import pytest
import torch
import torch.nn.functional as F

from imagetext.encoders import build_image_encoder
from imagetext.encoders.weights import TINY_OPEN_CLIP_CFG
from t2i.gan.galip import GALIP
from t2i.gan.variant import Condition

COND = 16  # the tiny CLIP tower's embedding size


def _tower(layers: int = 1):
    cfg = {**TINY_OPEN_CLIP_CFG, "vision_cfg": {**TINY_OPEN_CLIP_CFG["vision_cfg"], "layers": layers}}
    return build_image_encoder("openclip_vision_tiny", model_cfg=cfg)


def _model(imsize: int = 16, layers: int = 1, **kw) -> GALIP:
    torch.manual_seed(0)
    enc = _tower(layers)
    return GALIP(**{**GALIP.tiny, "imsize": imsize, "cond_dim": COND, "image_encoder": enc, **kw})


def _batch(m: GALIP, b: int = 4):
    g = torch.Generator().manual_seed(1)
    z = m.sample_noise(b, generator=g)
    sent = torch.randn(b, COND, generator=g)
    real = torch.rand(b, 3, m.imsize, m.imsize, generator=g) * 2 - 1
    return z, Condition(sent, image_encoder=m.image_encoder), real


def _trainable(module: torch.nn.Module):
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def _manual_normalise(images: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's statistics on [0, 1] pixels, written out independently of the encoder."""
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


@pytest.mark.parametrize("imsize", [16, 32])
def test_shapes_and_range(imsize: int) -> None:
    m = _model(imsize)
    z, cond, real = _batch(m)
    fake = m.generator(z, cond)
    assert fake.shape == (4, 3, imsize, imsize)
    assert fake.min() >= -1 and fake.max() <= 1 and fake.std() > 0
    logits, mis = m.discriminator(real, cond.sentence, cond.sentence[:2].flip(0))
    assert logits.shape == (4,) and mis.shape == (2,)
    assert m.discriminator(real, cond.sentence)[1] is None
    # the mismatched logits are the head on the first K images' features with the other sentences
    swapped, _ = m.discriminator(real[:2], cond.sentence[:2].flip(0))
    torch.testing.assert_close(mis, swapped)


def test_registered_and_defaults() -> None:
    from imagetext.registry import GANS

    assert GANS.get("galip") is GALIP and GALIP.needs_image_encoder
    m = _model(layers=3)
    assert m.prompt_layers == [0, 1] and m.generator.bridge_depth == 2 and m.d_layers == [0, 1, 2]
    m = _model(layers=3, prompt_layers=[-1], d_layers=[2, 0])
    assert m.prompt_layers == [2] and m.generator.bridge_depth == 3 and m.d_layers == [0, 2]


def test_losses_and_gradients() -> None:
    m = _model(layers=2, prompt_layers=[1])  # block 0 has no prompts: G's grads cross a plain frozen block
    z, cond, real = _batch(m)
    clip = m.image_encoder
    assert all(not p.requires_grad for p in clip.parameters())

    d = m.d_losses(m.discriminator, real, m.generator(z, cond), cond)
    assert {"d_real_loss", "d_fake_loss", "d_mismatch_loss", "d_ma_gp_loss"} <= set(d)
    assert all(torch.isfinite(v) for v in d.values())
    sum(v for k, v in d.items() if k.endswith("_loss")).backward()
    assert all(p.grad is None for p in m.generator.parameters())  # fakes are detached for D's step
    assert all(p.grad is None for p in clip.parameters())
    assert all(p.grad is not None for _, p in _trainable(m.discriminator))
    m.zero_grad(set_to_none=True)

    g = m.g_losses(m.discriminator, m.generator(z, cond), cond)
    assert {"g_adv_loss", "g_clip_loss"} <= set(g) and all(torch.isfinite(v) for v in g.values())
    sum(v for k, v in g.items() if k.endswith("_loss")).backward()
    assert all(p.grad is None for p in clip.parameters())
    grads = dict(_trainable(m.generator))
    assert all(p.grad is not None for p in grads.values())
    # gradients reach the layers before the frozen blocks: the token map and the prompts
    for name in ("to_tokens.weight", "prompts.1.weight", "stem.weight", "to_rgb.1.weight"):
        assert grads[name].grad.abs().sum() > 0, name


def test_clip_loss_is_the_cosine() -> None:
    m = _model(clip_weight=3.0)
    z, cond, _ = _batch(m)
    fake = m.generator(z, cond)
    g = m.g_losses(m.discriminator, fake, cond)
    with torch.no_grad():
        emb = m.image_encoder(fake).global_
    want = -3.0 * F.cosine_similarity(emb, cond.sentence, dim=1).mean()
    torch.testing.assert_close(g["g_clip_loss"], want)


@pytest.mark.parametrize("d_layers", [None, [0]], ids=["last-block", "early-block"])
def test_g_step_shares_one_tower_pass_between_d_and_the_clip_term(d_layers) -> None:
    from t2i.gan.galip import direct_tower_passes

    m = _model(layers=3, d_layers=d_layers)
    z, cond, _ = _batch(m)
    calls = []
    blocks = m.image_encoder.visual.transformer.resblocks
    hooks = [blk.register_forward_hook(lambda *a: calls.append(1)) for blk in blocks]

    def g_loss_and_grads(direct: bool):
        m.generator.zero_grad(set_to_none=True)
        fake = m.generator(z, cond)
        calls.clear()
        with direct_tower_passes() if direct else contextlib.nullcontext():
            out = m.g_losses(m.discriminator, fake, cond)
        n = len(calls)
        (out["g_adv_loss"] + out["g_clip_loss"]).backward()
        return out, {k: p.grad.clone() for k, p in _trainable(m.generator)}, n

    shared, g_shared, n_shared = g_loss_and_grads(False)
    direct, g_direct, n_direct = g_loss_and_grads(True)
    for h in hooks:
        h.remove()
    # one pass through the 3 blocks, against D's blocks up to its last read one plus the tower's forward
    assert n_shared == 3 and n_direct == m.discriminator.d_layers[-1] + 1 + 3
    for k in ("g_adv_loss", "g_clip_loss", "g_clip_cos"):
        torch.testing.assert_close(shared[k], direct[k], rtol=1e-5, atol=1e-6)
    for k in g_direct:
        torch.testing.assert_close(g_shared[k], g_direct[k], rtol=1e-4, atol=1e-6)
    # D's own forward is unchanged by the embedding path
    fake = m.generator(z, cond).detach()
    logits, emb = m.discriminator(fake, cond.sentence, embed=True)
    torch.testing.assert_close(logits, m.discriminator(fake, cond.sentence)[0])
    torch.testing.assert_close(emb, m.image_encoder(fake).global_, rtol=1e-5, atol=1e-6)


def test_discriminator_is_differentiable_in_the_images() -> None:
    # MA-GP differentiates D w.r.t. the real images, through the frozen tower
    m = _model()
    _, cond, real = _batch(m)
    real.requires_grad_(True)
    logits, _ = m.discriminator(real, cond.sentence)
    (gx,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    assert gx.abs().sum() > 0
    gx.pow(2).sum().backward()  # the double backward MA-GP needs
    assert all(p.grad is None for p in m.image_encoder.parameters())


def test_tower_shared_frozen_and_in_eval() -> None:
    m = _model()
    clip = m.image_encoder
    assert m.generator.clip is clip and m.discriminator.clip is clip
    n_clip = sum(1 for _ in clip.parameters())
    n_all = sum(1 for _ in m.parameters())
    n_own = sum(1 for n, _ in m.named_parameters(remove_duplicate=False) if ".clip." not in n)
    assert n_all == n_own + n_clip  # one copy of the tower's weights
    m.train()
    assert m.generator.training and m.discriminator.training
    assert not clip.training and not any(mod.training for mod in clip.modules())
    m.generator.train()
    m.discriminator.requires_grad_(True)  # a trainer toggling D's grads must not unfreeze CLIP
    assert not clip.training and all(not p.requires_grad for p in clip.parameters())
    assert all(p.requires_grad for _, p in _trainable(m.discriminator)) and _trainable(m.discriminator)


def test_needs_a_vit_tower() -> None:
    with pytest.raises(ValueError, match="image_encoder.*ViT.*None"):
        GALIP(**GALIP.tiny, cond_dim=COND, image_encoder=None)
    with pytest.raises(ValueError, match="ViT.*DamsmCNN"):
        GALIP(**GALIP.tiny, cond_dim=COND, image_encoder=build_image_encoder("damsm_cnn_tiny"))
    cfg = {**TINY_OPEN_CLIP_CFG, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8}}
    resnet = build_image_encoder("openclip_vision", model_name="tiny_rn", model_cfg=cfg)
    with pytest.raises(ValueError, match="ViT.*ModifiedResNet"):
        GALIP(**GALIP.tiny, cond_dim=COND, image_encoder=resnet)
    with pytest.raises(ValueError, match="cond_dim"):
        GALIP(**GALIP.tiny, cond_dim=COND + 1, image_encoder=_tower())
    with pytest.raises(ValueError, match="power of two"):
        GALIP(**{**GALIP.tiny, "imsize": 24}, cond_dim=COND, image_encoder=_tower())  # grid 4


@pytest.mark.parametrize("imsize", [16, 32])
def test_images_are_normalised_once(imsize: int) -> None:
    m = _model(imsize)
    z, cond, real = _batch(m)
    seen: List[torch.Tensor] = []
    hook = m.image_encoder.visual.conv1.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    try:
        m.discriminator(real, cond.sentence)
        fake = m.generator(z, cond)
        assert len(seen) == 1  # D's pass; G's bridge starts from tokens, not pixels
        m.g_losses(m.discriminator, fake, cond)  # D and the CLIP loss on the fakes: one tower pass for both
    finally:
        hook.remove()
    assert len(seen) == 2
    images = [real, fake.detach()]
    for x, got in zip(images, seen):
        assert got.shape[-2:] == (16, 16)  # the tower's own size
        torch.testing.assert_close(got, m.image_encoder.normalise(x))
        if imsize == 16:  # no resize: exactly the CLIP statistics applied once
            torch.testing.assert_close(got, _manual_normalise(x))
