"""Tiny helpers for runs started by ``accelerate launch`` or torchrun (CPU: gloo backend)."""
from __future__ import annotations

import os


def init_distributed() -> None:
    """Join the process group when the launcher started several processes; no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState

        # Without a GPU, PartialState(cpu=True) joins the processes over gloo.
        PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """True outside distributed runs and on rank 0 inside them (only rank 0 prints or writes)."""
    return int(os.environ.get("RANK", "0")) == 0


def rank_and_world_size() -> tuple[int, int]:
    """(rank, number of processes) of the initialised process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_ranks_agree(flag: bool) -> bool:
    """True when ``flag`` is True on every process (a collective: every rank must call it); ``flag``
    itself outside distributed runs. For choices that decide whether the ranks enter a collective."""
    if rank_and_world_size()[1] == 1:
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
