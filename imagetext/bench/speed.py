"""Small pieces the speed benchmarks share (``scripts/benchmark_train_speed.py``,
``scripts/benchmark_gan_variants.py``): machine description, device sync, median/min/max, paired speed-ups, and
the peak-memory probe (CUDA allocator or sampled RSS)."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (timing is meaningless without it); a no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stats(xs: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def speedup(before: Sequence[float], after: Sequence[float]) -> Dict[str, float]:
    """How much faster ``after`` is than ``before``, from their times per step measured in the same
    rounds: the ratio of the medians, and the median/min/max of the per-round ratios (a change in
    the machine's load within a round cancels in those)."""
    paired = [b / a for b, a in zip(before, after)]
    return {"ratio_of_medians": statistics.median(before) / statistics.median(after),
            "paired_median": statistics.median(paired), "paired_min": min(paired), "paired_max": max(paired)}


def count_params(m: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable_only)


def malloc_trim() -> None:
    """Give freed heap back to the OS so an RSS probe starts from the live set (glibc only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def machine_info(device: torch.device) -> Dict[str, Any]:
    """The bench runner's machine record (versions, platform, cores, GPUs) plus what a timing needs:
    the CPU model, torch's thread count, accelerate's version, the timed device and the load average."""
    import accelerate

    from .runner import machine_info as runner_machine_info

    cpu_name = platform.processor() or platform.machine()
    with contextlib.suppress(Exception):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_name = line.split(":", 1)[1].strip()
                break
    out = {**runner_machine_info(), "cpu": cpu_name, "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "accelerate": accelerate.__version__, "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name}
    if device.type == "cuda":  # what "fp32" means there
        out["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    with contextlib.suppress(Exception):
        out["load_average_at_start"] = list(os.getloadavg())
    return out


class RssPeak:
    """Peak RSS above the value at entry, sampled by a thread (psutil) or from ru_maxrss (a lower bound)."""

    def __init__(self) -> None:
        try:
            import psutil

            self.proc = psutil.Process()
        except Exception:  # pragma: no cover - psutil is a dependency here
            self.proc = None
        self.peak = 0
        self.method = ("psutil rss sampled every 1 ms" if self.proc is not None
                       else "resource ru_maxrss growth (lower bound)")

    def _rss(self) -> int:
        return self.proc.memory_info().rss

    def __enter__(self) -> "RssPeak":
        gc.collect()
        malloc_trim()
        if self.proc is None:
            import resource

            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return self
        self.base = self.peak = self._rss()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            import resource

            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return max(0, self.peak - self.base) / 2**20


def peak_memory(fn: Callable[[], Any], device: torch.device, what: str = "1 step") -> Dict[str, Any]:
    """Transient memory of one call of ``fn``: CUDA peak allocation above the allocation before it, or
    on CPU the sampled peak RSS above the RSS before it."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mem_mb": (peak - base) / 2**20, "peak_mem_abs_mb": peak / 2**20,
                "peak_mem_method": f"cuda max_memory_allocated over {what} minus memory_allocated before"}
    with RssPeak() as probe:
        fn()
    return {"peak_mem_mb": probe.growth_mb, "peak_mem_method": f"cpu peak RSS growth over {what}: " + probe.method}


def run_and_report(run: Callable[[Any], Dict[str, Any]], args: Any, table: Callable[[Dict[str, Any]], str]) -> Dict[str, Any]:
    """A speed script's main: ``run(args)`` with torch's thread count restored afterwards (in-process
    callers, e.g. tests, keep their setting), the JSON written to ``args.out`` if given, then printed
    (``args.json``) or tabulated."""
    import json

    threads = torch.get_num_threads()
    try:
        res = run(args)
    finally:
        torch.set_num_threads(threads)
    text = json.dumps(res, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text if args.json else table(res))
    return res
