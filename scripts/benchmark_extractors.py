"""Feature-extraction throughput (images/s) of the `synth` and `inception` extractors on this machine.

    python scripts/benchmark_extractors.py --repeats 3 --json docs/bench_extractors.json
    python scripts/benchmark_extractors.py --files --device cuda --n-inception 5000 --batch-size 200   # GPU target

Images are rendered synthetic birds at 64 px (the evaluator's size); Inception resizes them
to 299. With ``--files`` they are first written as PNG files of 64, 128 and 256 px and read
back through the CLI's loader (decoding and data-loader workers included), which is what a
user's FID costs. Threads default to all cores. Reports median and min/max over repeats.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from imagetext.data.synthetic import load_synthetic
from imagetext.metrics.engine import extract
from imagetext.registry import FEATURE_EXTRACTORS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-synth", type=int, default=1000)
    p.add_argument("--n-inception", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--workers", type=int, default=None, help="data-loader workers (default: the CLI's choice)")
    p.add_argument("--files", action="store_true", help="read PNG files of 64/128/256 px (decoding included)")
    p.add_argument("--json", dest="json_path")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    n = max(a.n_synth, a.n_inception)
    split = load_synthetic("birds", "test", n=n, size=64, n_test=n)
    if a.files:
        import tempfile
        from pathlib import Path

        tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
        images = []
        for i, s in enumerate(split.samples):
            size = (64, 128, 256)[i % 3]
            path = tmp / f"{i:06d}.png"
            s.load_image().resize((size, size)).save(path)
            images.append(path)
    else:
        images = torch.stack([torch.from_numpy(__import__("numpy").asarray(s.load_image()).copy()).permute(2, 0, 1)
                              for s in split.samples])
    rows = []
    for name, count, kw in [("synth", a.n_synth, {"world": "birds"}), ("inception", a.n_inception, {})]:
        ext = FEATURE_EXTRACTORS.build(name, **kw)
        run = dict(batch_size=a.batch_size, progress=False, device=a.device, num_workers=a.workers)
        extract(ext, images[: a.batch_size], **run)  # warm-up
        rates = []
        for _ in range(a.repeats):
            if a.device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            r = extract(ext, images[:count], **run)
            rates.append(count / (time.perf_counter() - t))
        rows.append({"extractor": name, "weights": ext.provenance.weights, "images": count,
                     "input_px": "64/128/256 png" if a.files else 64, "device": r.device,
                     "network_px": ext.provenance.input_size, "batch_size": a.batch_size, "threads": a.threads,
                     "images_per_s_median": round(statistics.median(rates), 1),
                     "images_per_s_min": round(min(rates), 1), "images_per_s_max": round(max(rates), 1)})
    print("| extractor | network input | images | img/s median (min-max) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['extractor']} | {r['network_px']} px | {r['images']} | {r['images_per_s_median']} "
              f"({r['images_per_s_min']}-{r['images_per_s_max']}) |")
    print(f"\ncommand: python scripts/benchmark_extractors.py {' '.join(sys.argv[1:] if argv is None else argv)}; "
          f"torch {torch.__version__}, {a.threads} threads")
    if a.json_path:
        with open(a.json_path, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
