"""t2i/gan/blocks.py: the nearest-x2 + 3x3 convolution folded into a transposed one equals the direct
computation (values and gradients), in both memory formats, and the blocks built on it keep their maths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from t2i.gan.blocks import UpBlock, upsample_conv3x3


def _direct(x, conv):
    return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (2, 3, 5, 7), (1, 2, 1, 1)])
def test_folded_upsample_conv_equals_conv_of_the_upsampled_map(channels_last, bias, shape):
    torch.manual_seed(0)
    b, cin, h, w = shape
    conv = torch.nn.Conv2d(cin, 6, 3, 1, 1, bias=bias).double()
    x = torch.randn(b, cin, h, w, dtype=torch.float64)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    want, got = _direct(x, conv), upsample_conv3x3(x, conv)
    assert got.shape == (b, 6, 2 * h, 2 * w)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if channels_last and cin > 1 and h * w > 1:
        assert got.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(want)
    params = [x, conv.weight] + ([conv.bias] if bias else [])
    for a, e in zip(torch.autograd.grad(got, params, g), torch.autograd.grad(want, params, g)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none; scripts/gpu_session.sh)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_folded_upsample_conv_on_cuda(dtype):
    """cuDNN's transposed convolution (TF32 off) and under bf16 autocast: the fold within the dtype's rounding."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 32, 3, 1, 1).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(4, 32, 16, 16, device="cuda").contiguous(memory_format=torch.channels_last)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
            want, got = _direct(x, conv), upsample_conv3x3(x, conv)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert got.dtype == want.dtype == dtype
    tol = dict(rtol=1e-4, atol=1e-4) if dtype is torch.float32 else dict(rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(got.float(), want.float(), **tol)


def test_only_a_plain_3x3_same_padding_conv_is_folded():
    x = torch.randn(1, 2, 4, 4)
    for conv in (torch.nn.Conv2d(2, 3, 1), torch.nn.Conv2d(2, 3, 3, 2, 1), torch.nn.Conv2d(2, 3, 3, 1, 0),
                 torch.nn.Conv2d(2, 4, 3, 1, 1, groups=2)):
        with pytest.raises(ValueError, match="3x3 conv with stride 1 and padding 1"):
            upsample_conv3x3(x, conv)


def test_up_block_is_the_published_order_of_operations():
    """skip(up(x)) + conv2(fuse2(conv1(fuse1(up(x))))), the published block, from the same weights."""
    torch.manual_seed(0)
    block = UpBlock(cond_dim=7, cin=6, cout=4).double()
    for p in block.parameters():  # move the affines off their identity init so the fusions matter
        p.data.add_(0.1 * torch.randn_like(p))
    x, c = torch.randn(3, 6, 4, 4, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    want = block.skip(up) + block.conv2(block.fuse2(block.conv1(block.fuse1(up, c)), c))
    torch.testing.assert_close(block(x, c), want, rtol=1e-12, atol=1e-12)


def test_generation_caches_the_folded_kernel_until_the_weight_changes():
    """Without autograd the folded kernel is reused; an in-place update (an EMA step) refolds it."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, 1, 1).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        first = upsample_conv3x3(x, conv)
        kernel = conv._nearest_x2_kernel[1]
        assert upsample_conv3x3(x, conv) is not first and conv._nearest_x2_kernel[1] is kernel
        conv.weight.mul_(2.0)  # in place, as the EMA's lerp_
        torch.testing.assert_close(upsample_conv3x3(x, conv), _direct(x, conv), rtol=1e-12, atol=1e-12)
        assert conv._nearest_x2_kernel[1] is not kernel
    assert "_nearest_x2_kernel" not in conv.state_dict()
    y = upsample_conv3x3(x, conv)  # with autograd: folded afresh, so the gradient reaches the weight
    y.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_inference_mode_models_and_calls_work_and_a_cached_kernel_serves_autograd_later():
    x = torch.randn(2, 3, 4, 4)
    with torch.inference_mode():  # a model built (loaded) under inference_mode: no version counter
        conv = torch.nn.Conv2d(3, 4, 3, 1, 1)
        torch.testing.assert_close(upsample_conv3x3(x, conv), _direct(x, conv))
    frozen = torch.nn.Conv2d(3, 4, 3, 1, 1).requires_grad_(False)
    with torch.inference_mode():  # a normal model called under inference_mode caches its kernel
        upsample_conv3x3(x, frozen)
    assert not frozen._nearest_x2_kernel[1].is_inference()
    z = torch.randn(2, 3, 4, 4, requires_grad=True)  # later: gradients wrt the input through the frozen conv
    upsample_conv3x3(z, frozen).sum().backward()
    torch.testing.assert_close(z.grad, torch.autograd.grad(_direct(z, frozen).sum(), z)[0])


def test_direct_upsample_conv_switches_every_caller_and_restores_the_fold():
    """The benchmark's ablation switch: inside it no kernel is folded (or cached); after it, even on an
    exception, the fold is back."""
    from t2i.gan import blocks

    conv = torch.nn.Conv2d(3, 4, 3, 1, 1)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad(), blocks.direct_upsample_conv():
        torch.testing.assert_close(upsample_conv3x3(x, conv), _direct(x, conv), rtol=0, atol=0)
    assert not hasattr(conv, "_nearest_x2_kernel")
    with pytest.raises(RuntimeError), blocks.direct_upsample_conv():
        raise RuntimeError("a failing step")
    with torch.no_grad():
        upsample_conv3x3(x, conv)
    assert hasattr(conv, "_nearest_x2_kernel")
