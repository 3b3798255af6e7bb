"""Benchmark of :class:`matching.index.SearchIndex` on synthetic unit vectors (issue 10).

Why: the issue's target is, at a 10^6-item gallery of d=512 embeddings on this kind of
machine (2 CPU cores), single-query p50 latency under 20 ms with recall@10 >= 0.95 of the
approximate index against exact search. This script measures, per gallery size and
index kind: build time, memory (index file size and RSS growth while building), save and
verified (sha256) mmap load time, single-query latency p50/p95 (batches of one, as the
CLI and the demo search), and recall@10 against the exact flat index, sweeping the
search-time knob (HNSW ef_search, IVF nprobe) so the trade-off curve and the cheapest
setting that meets the recall target are both reported.

Data (``--data``): ``uniform`` = independent Gaussian directions on the sphere (the
hardest case for any ANN index: no neighbourhood structure), ``clustered`` = a mixture
of n/100 directions (noise of norm ~0.5 around each) with queries that are noisy copies
(noise norm ~0.3) of gallery items (closer to real
embeddings, where a caption lies near its image).

Memory: ``file_mb`` (what is saved and, loaded with mmap, what the OS pages in) is the
reliable figure; ``rss_delta_mb`` is a lower bound, since the allocator reuses memory
freed by the previous index of the same run.

Example (what the issue asks; long at 10^6: the JSON is rewritten after every size)::

    python scripts/benchmark_index.py --sizes 10000 100000 1000000 --json runs/bench_index.json

The commands and results behind docs/RESULTS.md are in docs/results/index/ (HNSW at 10^6 was
not run: its single-thread build is over an hour on the shared 2-core machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagetext.cliargs import positive_int, seed_int  # noqa: E402
from matching.index import SearchIndex  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


def unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(kind: str, n: int, nq: int, d: int, seed: int) -> tuple:
    """Gallery (n, d) and queries (nq, d), float32 unit rows, generated in chunks."""
    rng = np.random.default_rng(seed)
    g = np.empty((n, d), np.float32)
    if kind == "uniform":
        for s in range(0, n, 100_000):
            g[s:s + 100_000] = unit_rows(rng.standard_normal((min(100_000, n - s), d), dtype=np.float32))
        q = unit_rows(rng.standard_normal((nq, d), dtype=np.float32))
        return g, q
    centers = unit_rows(rng.standard_normal((max(1, n // 100), d), dtype=np.float32))
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        c = centers[rng.integers(0, len(centers), m)]
        g[s:s + m] = unit_rows(c + 0.5 / np.sqrt(d) * rng.standard_normal((m, d), dtype=np.float32))
    src = g[rng.integers(0, n, nq)]
    q = unit_rows(src + 0.3 / np.sqrt(d) * rng.standard_normal((nq, d), dtype=np.float32))
    return g, q


def latencies_ms(index: SearchIndex, queries: np.ndarray, k: int) -> tuple:
    """Per-query wall time (ms) for one-query searches, and the result ids."""
    times, ids = [], []
    for row in queries:
        t = time.perf_counter()
        res = index.search(row[None, :], k)
        times.append((time.perf_counter() - t) * 1e3)
        ids.append([h[0] for h in res[0]])
    return np.array(times), ids


def recall(found: List[List[str]], truth: List[List[str]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def run_size(n: int, args: argparse.Namespace, data: str, work: Path) -> Dict[str, Any]:
    t = time.perf_counter()
    g, q = make_data(data, n, args.queries, args.dim, args.seed)
    ids = [str(i) for i in range(n)]
    out: Dict[str, Any] = {"size": n, "data": data, "dim": args.dim, "queries": args.queries,
                           "gen_s": round(time.perf_counter() - t, 2), "indexes": []}
    truth = None
    for kind in ["flat"] + [k for k in args.kinds if k != "flat"]:
        params: Dict[str, Any] = {}
        if kind == "hnsw":
            params = {"M": args.hnsw_m, "ef_construction": args.ef_construction}
        r0 = rss_mb()
        t = time.perf_counter()
        index = SearchIndex.build(g, ids, kind=kind, progress=args.progress, **params)
        rec: Dict[str, Any] = {"kind": kind, "params": dict(index.params),
                               "build_s": round(time.perf_counter() - t, 2),
                               "rss_delta_mb": round(rss_mb() - r0, 1)}
        d = work / f"{data}-{n}-{kind}"
        t = time.perf_counter()
        index.save(d)
        rec["save_s"] = round(time.perf_counter() - t, 2)
        rec["file_mb"] = round(sum(p.stat().st_size for p in d.iterdir()) / 2**20, 1)
        del index
        t = time.perf_counter()
        index = SearchIndex.load(d, mmap=True)
        rec["load_mmap_verified_s"] = round(time.perf_counter() - t, 2)
        if kind == "flat":
            truth = [[h[0] for h in r] for r in index.search(q, args.k)]
            lat, found = latencies_ms(index, q[:args.latency_queries], args.k)
            rec["sweep"] = [{"p50_ms": round(float(np.percentile(lat, 50)), 3),
                             "p95_ms": round(float(np.percentile(lat, 95)), 3),
                             f"recall@{args.k}": recall(found, truth, args.k)}]
        else:
            rec["sweep"] = []
            knob = "ef_search" if kind == "hnsw" else "nprobe"
            values = args.ef_search if kind == "hnsw" else [v for v in args.nprobe if v <= index.params["nlist"]]
            for v in values:
                index.set_search_params(**{knob: v})
                lat, _ = latencies_ms(index, q[:args.latency_queries], args.k)
                found = [[h[0] for h in r] for r in index.search(q, args.k)]
                rec["sweep"].append({knob: v, "p50_ms": round(float(np.percentile(lat, 50)), 3),
                                     "p95_ms": round(float(np.percentile(lat, 95)), 3),
                                     f"recall@{args.k}": round(recall(found, truth, args.k), 4)})
            ok = [s for s in rec["sweep"] if s[f"recall@{args.k}"] >= args.target_recall]
            rec["cheapest_meeting_recall"] = min(ok, key=lambda s: s["p50_ms"]) if ok else None
        for s in rec["sweep"]:
            print(f"n={n:>8} {data:9} {kind:5} {json.dumps({k: v for k, v in s.items()})}", flush=True)
        print(f"n={n:>8} {data:9} {kind:5} build {rec['build_s']} s, file {rec['file_mb']} MiB, "
              f"rss +{rec['rss_delta_mb']} MiB, verified mmap load {rec['load_mmap_verified_s']} s", flush=True)
        out["indexes"].append(rec)
        del index
    return out


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=positive_int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=positive_int, default=512)
    ap.add_argument("--data", nargs="+", choices=["uniform", "clustered"], default=["uniform"])
    ap.add_argument("--kinds", nargs="+", choices=["hnsw", "ivf"], default=["hnsw"],
                    help="approximate kinds to compare with exact flat search (default: hnsw)")
    ap.add_argument("--queries", type=positive_int, default=1000, help="queries for recall (default 1000)")
    ap.add_argument("--latency-queries", type=positive_int, default=300, help="one-query searches timed (default 300)")
    ap.add_argument("--k", type=positive_int, default=10)
    ap.add_argument("--hnsw-m", type=positive_int, default=32)
    ap.add_argument("--ef-construction", type=positive_int, default=128)
    ap.add_argument("--ef-search", type=positive_int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--nprobe", type=positive_int, nargs="+", default=[8, 32, 64, 128, 256])
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--seed", type=seed_int, default=0)
    ap.add_argument("--threads", type=positive_int, help="FAISS OpenMP threads (default: all cores); "
                    "1 avoids OpenMP spin/wait costs when the cores are shared with other work")
    ap.add_argument("--progress", action="store_true", help="progress bars while building")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file (rewritten after every gallery size)")
    ap.add_argument("--workdir", type=Path, help="folder for the temporary saved indexes (default: the system temp dir)")
    args = ap.parse_args(argv)

    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    meta = {"faiss": faiss.__version__, "omp_threads": faiss.omp_get_max_threads(),
            "cpus": os.cpu_count(), "seed": args.seed, "argv": sys.argv[1:]}
    print(json.dumps(meta), flush=True)
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_index_", dir=args.workdir) as tmp:
        for data in args.data:
            for n in args.sizes:
                results.append(run_size(n, args, data, Path(tmp)))
                if args.json:  # after every size: a long run that is stopped keeps what it measured
                    meta["complete"] = len(results) == len(args.data) * len(args.sizes)
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
                    print(f"wrote {args.json} ({len(results)} of {len(args.data) * len(args.sizes)} runs)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
