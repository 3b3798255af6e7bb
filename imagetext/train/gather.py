"""All-gather with gradients, so contrastive negatives span the global batch.

Each process holds a shard z_r of the global batch and computes the *same* global loss L over
``cat(z_0..z_{W-1})``. The exact gradient of L w.r.t. the parameters is sum_r dL/dz_r dz_r/dtheta.
Forward: all_gather. Backward: every process has dL/d(all shards) from its own copy of L; summing
those over processes (all_reduce) and keeping the own slice gives W * dL/dz_r, and DDP's gradient
*average* over W processes then yields exactly the single-process gradient of L over the 2B batch.

The cheaper "replace own slice with the local tensor" trick (no backward communication) gives only
dL/dz_r, i.e. gradients 1/W of the single-process ones after DDP's averaging; we all_reduce instead
(gloo has no reduce_scatter, all_reduce works on every backend).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, world = _world()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (shape [B, ...]) from every process along dim 0, in rank order, with gradients.

    A no-op on one process. Every process must pass the same shape (accelerate's default
    ``even_batches`` ensures equal batch sizes); a mismatch raises ValueError naming the sizes.
    """
    rank, world = _world()
    if world == 1:
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    sizes_list = [int(s.item()) for s in sizes]
    if len(set(sizes_list)) != 1:
        raise ValueError(f"gather_with_grad: batch sizes differ across processes {sizes_list}; "
                         "keep even_batches on (drop_last or equal shards)")
    return _GatherWithGrad.apply(x)
