"""Benchmark the metric core: FID matrix functions side by side, and chunked retrieval.

FID at d=2048 (Inception pool3 width), full-rank (4000 samples) and rank-deficient
(1000 samples) covariances:
  ours      imagetext.metrics.frechet_distance, default method="auto": Cholesky factor L of
            Σ1 when positive definite (eigvalsh of Lᵀ Σ2 L), else eigh restricted to the rank
  ours-eigh frechet_distance(method="eigh"): S from eigh(Σ1) always (the METHODS §5 form)
  eigh      a plain symmetric form: S = Σ1^½ by eigh, eigvalsh(S Σ2 S), full size
  eigvals   torchmetrics' _compute_fid: eigvals(Σ1 Σ2) (torch-fidelity uses the same form)
  sqrtm     pytorch-fid's form: scipy.linalg.sqrtm(Σ1 Σ2), real part of the trace
  lowrank   imagetext.metrics.fid_from_features(method="lowrank") from the raw features
            (rank-deficient case; its time includes centring, the n1 x n2 product and SVD)
Retrieval: 5K images x 25K captions (5 per image) from float32 embeddings, tiled path
(retrieval_recall_from_embeddings), and the dense path for an equality check.

Usage:
  python scripts/benchmark_metrics.py [--repeats 3] [--json out.json] [--quick]
Prints a markdown section and the command line; timings are wall-clock seconds, median
over repeats with seeds 0..R-1, spread = min..max.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import warnings
from contextlib import nullcontext
from typing import Callable, Dict, List

import numpy as np
import scipy
import scipy.linalg

from imagetext.metrics import fid_from_features, frechet_distance, retrieval_recall, retrieval_recall_from_embeddings


# ----------------------------------------------------------------- reference FID forms
def fid_sqrtm(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's form: principal square root of Σ1Σ2 by scipy's Schur method."""
    with warnings.catch_warnings():  # scipy >= 1.16 deprecates disp; the computation is the same
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():  # pytorch-fid's fallback: nudge the diagonals
            off = np.eye(s1.shape[0]) * 1e-6
            covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def fid_eigvals(mu1, s1, mu2, s2) -> float:
    """torchmetrics' _compute_fid on float64 tensors (eigvals of the non-symmetric Σ1Σ2)."""
    import torch
    from torchmetrics.image.fid import _compute_fid

    return float(_compute_fid(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2))))


def fid_plain_eigh(mu1, s1, mu2, s2) -> float:
    """The textbook symmetric form at full size: S = V √w Vᵀ, eigvalsh(S Σ2 S)."""
    w, v = np.linalg.eigh(s1)
    sq = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(sq @ s2 @ sq)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


# ----------------------------------------------------------------- data
def make_features(rng: np.random.Generator, n: int, mix: np.ndarray, shift: float) -> np.ndarray:
    """Inception-like features: non-negative, correlated, mean ~0.4."""
    z = rng.standard_normal((n, mix.shape[0]))
    return np.abs(z @ mix) * 0.5 + shift


def timed(fn: Callable[[], float]) -> tuple:
    t = time.perf_counter()
    v = fn()
    return time.perf_counter() - t, v


def summarise(ts: List[float]) -> Dict[str, float]:
    return {"median_s": float(np.median(ts)), "min_s": float(np.min(ts)), "max_s": float(np.max(ts)), "runs": len(ts)}


def warm_up() -> None:
    """Load torch / torchmetrics and touch every code path once, outside the timings."""
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 16)), rng.random((30, 16))
    st = [(a.mean(0), np.cov(a, rowvar=False)) for a in (x, y)]
    for fn in (frechet_distance, fid_plain_eigh, fid_eigvals, fid_sqrtm):
        fn(st[0][0], st[0][1], st[1][0], st[1][1])
    fid_from_features(x, y, method="lowrank")


def bench_fid(d: int, cases: Dict[str, int], repeats: int) -> Dict[str, dict]:
    warm_up()
    mix = np.random.default_rng(12345).standard_normal((d, d)) / np.sqrt(d)
    out: Dict[str, dict] = {}
    for case, n in cases.items():
        methods = ["ours", "ours-eigh", "eigh", "eigvals", "sqrtm"] + (["lowrank"] if n < d else [])
        times: Dict[str, List[float]] = {m: [] for m in methods}
        diffs: Dict[str, List[float]] = {m: [] for m in methods}
        values: List[float] = []
        for seed in range(repeats):
            rng = np.random.default_rng(seed)
            x1, x2 = make_features(rng, n, mix, 0.4), make_features(rng, n, mix, 0.45)
            st = [(x.mean(0), np.cov(x, rowvar=False)) for x in (x1, x2)]
            args = (st[0][0], st[0][1], st[1][0], st[1][1])
            fns = {"ours": lambda: frechet_distance(*args), "ours-eigh": lambda: frechet_distance(*args, method="eigh"),
                   "eigh": lambda: fid_plain_eigh(*args),
                   "eigvals": lambda: fid_eigvals(*args), "sqrtm": lambda: fid_sqrtm(*args),
                   "lowrank": lambda: fid_from_features(x1, x2, method="lowrank")}
            vals = {}
            for m in methods:
                t, vals[m] = timed(fns[m])
                times[m].append(t)
            # reference value: the exact low-rank route when there is one, else ours
            ref = vals.get("lowrank", vals["ours"])
            values.append(ref)
            for m in methods:
                diffs[m].append(abs(vals[m] - ref))
            print(f"  fid {case} seed {seed}: " + ", ".join(f"{m} {times[m][-1]:.2f}s" for m in methods), file=sys.stderr)
        out[case] = {"n": n, "d": d, "fid_median": float(np.median(values)),
                     "reference": "lowrank" if n < d else "ours",
                     "methods": {m: {**summarise(times[m]), "max_abs_diff": float(max(diffs[m])),
                                     "max_rel_diff": float(max(diffs[m]) / min(values))} for m in methods}}
    return out


def bench_retrieval(n_img: int, per: int, dims: List[int], repeats: int, chunk: int, check_dense: bool) -> Dict[str, dict]:
    out: Dict[str, dict] = {}
    c2i = np.repeat(np.arange(n_img), per)
    for d in dims:
        times, dense_times, max_diff, rsums = [], [], 0.0, []
        for seed in range(repeats):
            rng = np.random.default_rng(seed)
            img = rng.standard_normal((n_img, d)).astype(np.float32)
            # positive margin ~4 std of the negatives' spread: R@1 in a realistic range, not 100%
            sigma = np.sqrt(max(d / 16.0 - 1.0, 0.1))
            txt = (np.repeat(img, per, axis=0) + sigma * rng.standard_normal((n_img * per, d))).astype(np.float32)
            t, res = timed(lambda: retrieval_recall_from_embeddings(img, txt, c2i, chunk_size=chunk))
            times.append(t)
            rsums.append(res["rsum"])
            if check_dense:
                t2, dense = timed(lambda: retrieval_recall(img @ txt.T, c2i, chunk_size=n_img * per))
                dense_times.append(t2)
                max_diff = max(max_diff, max(abs(res[k] - dense[k]) for k in res))
            print(f"  retrieval d={d} seed {seed}: {t:.2f}s (rsum {res['rsum']:.1f})", file=sys.stderr)
        out[f"d{d}"] = {"images": n_img, "captions": n_img * per, "d": d, "chunk_size": chunk,
                        "tiled": summarise(times), "rsum_median": float(np.median(rsums)),
                        **({"dense": summarise(dense_times), "max_abs_diff_vs_dense": max_diff} if check_dense else {})}
    return out


def environment() -> Dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    env = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "cpus": os.cpu_count(), "machine": platform.machine(), "load_avg_at_start": load}
    try:
        from threadpoolctl import threadpool_info

        env["blas"] = [f"{i['internal_api']} {i.get('version')} threads={i['num_threads']}" for i in threadpool_info()]
    except ImportError:
        env["blas_env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return env


def to_markdown(res: dict, cmd: str) -> str:
    lines = ["## Metric core benchmark", "", f"`{cmd}`", "",
             f"Environment: {json.dumps(res['environment'])}", ""]
    for case, r in res["fid"].items():
        lines += [f"### FID, d={r['d']}, {case} ({r['n']} samples per set; FID ≈ {r['fid_median']:.4f}; "
                  f"differences against {r['reference']})", "",
                  "| method | median s | min..max s | vs sqrtm speed-up | max abs diff | max rel diff |",
                  "|---|---|---|---|---|---|"]
        sq = r["methods"]["sqrtm"]["median_s"]
        for m, v in r["methods"].items():
            lines.append(f"| {m} | {v['median_s']:.3f} | {v['min_s']:.3f}..{v['max_s']:.3f} | "
                         f"{sq / v['median_s']:.1f}x | {v['max_abs_diff']:.2e} | {v['max_rel_diff']:.2e} |")
        lines.append("")
    lines += ["### Retrieval recall from embeddings (float32, tiled)", "",
              "| images x captions | d | chunk | tiled median s | min..max s | dense median s | max |diff| vs dense | rSum |",
              "|---|---|---|---|---|---|---|---|"]
    for r in res["retrieval"].values():
        dense = r.get("dense")
        lines.append(f"| {r['images']} x {r['captions']} | {r['d']} | {r['chunk_size']} | {r['tiled']['median_s']:.3f} | "
                     f"{r['tiled']['min_s']:.3f}..{r['tiled']['max_s']:.3f} | "
                     f"{dense['median_s']:.3f} | {r['max_abs_diff_vs_dense']:.1e} | {r['rsum_median']:.1f} |" if dense else
                     f"| {r['images']} x {r['captions']} | {r['d']} | {r['chunk_size']} | {r['tiled']['median_s']:.3f} | "
                     f"{r['tiled']['min_s']:.3f}..{r['tiled']['max_s']:.3f} | - | - | {r['rsum_median']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per method (seeds 0..R-1)")
    p.add_argument("--dim", type=int, default=2048, help="FID feature dimension")
    p.add_argument("--full-n", type=int, default=4000, help="samples per set, full-rank case")
    p.add_argument("--deficient-n", type=int, default=1000, help="samples per set, rank-deficient case")
    p.add_argument("--retrieval-images", type=int, default=5000)
    p.add_argument("--captions-per-image", type=int, default=5)
    p.add_argument("--retrieval-dims", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--no-dense-check", action="store_true", help="skip the dense retrieval path")
    p.add_argument("--skip-fid", action="store_true")
    p.add_argument("--skip-retrieval", action="store_true")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test of this script)")
    p.add_argument("--json", type=str, default=None, help="also write the results as JSON here")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="limit BLAS/LAPACK threads (needs threadpoolctl); 1 avoids thrashing on an oversubscribed CPU")
    a = p.parse_args(argv)
    limit = nullcontext()
    if a.blas_threads:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(a.blas_threads)
        import torch  # torchmetrics' eigvals runs on torch's own thread pool

        torch.set_num_threads(a.blas_threads)
    with limit:
        return run(a, argv)


def run(a: argparse.Namespace, argv) -> int:
    if a.quick:
        a.dim, a.full_n, a.deficient_n, a.retrieval_images, a.retrieval_dims = 256, 500, 120, 500, [64]
    res: Dict[str, object] = {"environment": environment(), "fid": {}, "retrieval": {}}
    if not a.skip_fid:
        res["fid"] = bench_fid(a.dim, {"full-rank": a.full_n, "rank-deficient": a.deficient_n}, a.repeats)
    if not a.skip_retrieval:
        res["retrieval"] = bench_retrieval(a.retrieval_images, a.captions_per_image, a.retrieval_dims, a.repeats,
                                           a.chunk_size, not a.no_dense_check)
    cmd = "python scripts/benchmark_metrics.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    res["command"] = cmd.strip()
    print(to_markdown(res, res["command"]))  # type: ignore[arg-type]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
