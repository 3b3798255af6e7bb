"""Train (resumably) and pack the demo's bundled checkpoints into app/checkpoints/.

    make checkpoints                                   # = python scripts/make_checkpoints.py
    python scripts/make_checkpoints.py --pack-only     # repack from finished cells, train nothing

What it trains, through the benchmark runner (so every model is a recorded, seeded cell
that anyone can rerun, and a killed run continues where it stopped):

1. phase 1 (configs/bench/pretrain.yaml): the plain DAMSM pair of `scenes`, seed 0 (the text
   encoder of every variant but GALIP);
2. configs/bench/demo.yaml: each GAN variant, baseline and `_scl` (and the narrow CLIP-style
   pair GALIP is conditioned on), and per world (`scenes`, `birds`) a VSE0 anchor and the
   offline DBL target boosted from it: the galleries' matchers.

What it packs (app/checkpoints/, at most 40 MB):

* ``t2i/<config>/``: each generator's exported pipeline, weights stored as float16 (the
  pipeline computes in float32); its frozen phase-1 text encoder is kept once, in
  ``t2i/text_encoders/<cell>/``, which ``pipeline.json`` points to;
* ``retrieval/<world>/``: a :class:`matching.gallery.Gallery`: the DBL matcher (float16
  weights; the index is built from the rounded weights, so it matches what the demo
  computes), the first ``--gallery-size`` test images and their captions;
* ``manifest.json``: ``{"files": [{"path", "sha256", "bytes", "variant", "world", "steps",
  "seed", "fid", ...}], "generators": [...], "galleries": [...], "examples": [...]}``; every
  metric is copied from the cell record that measured it (docs/results/cells/...).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_BYTES = 40 * 1024 * 1024
CELLS = ROOT / "docs" / "results" / "cells"
RUNS = ROOT / "runs" / "bench"
WORLDS = ("scenes", "birds")
MATCHER_CELL = "matcher_{world}_dbl-seed0"  # the DBL target the galleries serve (configs/bench/demo.yaml)
TRAIN_STEPS = [
    ("configs/bench/pretrain.yaml", ["scenes-plain-seed0"]),
    ("configs/bench/demo.yaml", ["*"]),
]


def halve(path: Path) -> None:
    """Rewrite a safetensors file with float32 tensors stored as float16 (metadata kept)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: (v.half() if v.dtype == torch.float32 else v).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=meta)


def train(python: str) -> None:
    for matrix, ids in TRAIN_STEPS:
        cmd = [python, str(ROOT / "scripts" / "bench.py"), "run", matrix]
        for i in ids:
            cmd += ["--only", i]
        print("make_checkpoints:", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        if rc != 0:
            print(f"make_checkpoints: warning: {matrix} exited {rc}; packing what finished", file=sys.stderr)


def record(matrix: str, cell: str) -> Optional[Dict[str, Any]]:
    p = CELLS / matrix / f"{cell}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def share_text_encoder(dst: Path, out: Path, files: List[Dict[str, Any]]) -> None:
    """Keep one copy of each frozen phase-1 text encoder (t2i/text_encoders/<cell>), pointed to by pipeline.json."""
    import yaml

    from imagetext.encoders.weights import sha256_file

    enc_path = Path(yaml.safe_load((dst / "config.yaml").read_text())["encoders"]["path"])
    cell = enc_path.parent.name if enc_path.name == "run" else enc_path.name
    shared = out / "t2i" / "text_encoders" / cell
    if not shared.exists():
        shared.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(dst / "text_encoder"), str(shared))
        matrix = "pretrain" if record("pretrain", cell) else "demo"
        rec = record(matrix, cell) or {"params": {}}
        for f in sorted(shared.rglob("*")):
            if f.is_file():
                files.append({"path": str(f.relative_to(out)), "variant": "phase-1 text encoder", "world": rec["params"].get("world"),
                              "steps": rec["params"].get("steps"), "seed": rec["params"].get("seed"), "fid": None,
                              "cell": f"docs/results/cells/{matrix}/{cell}.json"})
    else:
        same = sha256_file(shared / "model.safetensors") == sha256_file(dst / "text_encoder" / "model.safetensors")
        if not same:
            raise SystemExit(f"make_checkpoints: {dst}: its text encoder differs from {shared} (same cell?)")
        shutil.rmtree(dst / "text_encoder")
    meta = json.loads((dst / "pipeline.json").read_text())
    meta["text_encoder"] = f"../text_encoders/{cell}"
    (dst / "pipeline.json").write_text(json.dumps(meta, indent=2) + "\n")


def pack_generators(out: Path, files: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    gens = []
    for p in sorted((CELLS / "demo").glob("*.json")):
        rec = json.loads(p.read_text())
        params, res = rec["params"], rec["results"]
        if params.get("variant") in ("clip_pair", "matcher_anchor", "matcher_dbl"):  # not generators
            continue
        config = params["config"]
        src = ROOT / res["final"]
        if not (src / "pipeline.json").is_file():
            print(f"make_checkpoints: {p.name}: its model {src} is gone; rerun the cell", file=sys.stderr)
            continue
        dst = out / "t2i" / config
        shutil.copytree(src, dst)
        for st in dst.rglob("*.safetensors"):
            halve(st)
        share_text_encoder(dst, out, files)
        test = res.get("test", {})
        entry = {"variant": params["variant"], "arm": "scl" if config.endswith("_scl") else "baseline",
                 "dir": f"t2i/{config}", "world": params["world"], "steps": int(params["steps"]),
                 "seed": int(params["seed"]), "cell": f"docs/results/cells/demo/{p.name}",
                 "metrics": {k: test.get(k) for k in ("fid", "kid", "faithfulness", "r_precision")},
                 "train_img_per_s": res.get("train_img_per_s")}
        gens.append(entry)
        for f in sorted(dst.rglob("*")):
            if f.is_file():
                files.append({"path": str(f.relative_to(out)), "variant": entry["variant"], "arm": entry["arm"],
                              "world": entry["world"], "steps": entry["steps"], "seed": entry["seed"],
                              "fid": entry["metrics"]["fid"]})
    order = ["dfgan", "galip", "ssagan", "attngan", "dmgan"]
    return sorted(gens, key=lambda g: (order.index(g["variant"]) if g["variant"] in order else 99, g["arm"]))


def pack_galleries(out: Path, files: List[Dict[str, Any]], size: int) -> List[Dict[str, Any]]:
    import torch
    import yaml

    from imagetext.registry import load_saved_model
    from matching.gallery import Gallery

    out_g = []
    for world in WORLDS:
        cell = MATCHER_CELL.format(world=world)
        rec = record("demo", cell)
        run = RUNS / "demo" / cell / "run"
        if rec is None or not run.is_dir():
            print(f"make_checkpoints: no finished matching cell {cell}: no {world} gallery", file=sys.stderr)
            continue
        model = load_saved_model(str(run)).float().eval()
        with torch.no_grad():  # round to float16 first: the index must match the weights the demo loads
            for prm in model.parameters():
                prm.copy_(prm.half().float())
        split = _world_split(world)
        samples = split.samples[:size]
        images = [s.load_image() for s in samples]
        captions = [(c, i) for i, s in enumerate(samples) for c in s.captions]
        dst = out / "retrieval" / world
        image_size = int(yaml.safe_load((run / "config.yaml").read_text())["data"]["image_size"])
        Gallery.build(model, images, dst, captions=captions, image_size=image_size,
                      info={"world": world, "matcher": cell})
        for st in (dst / "matcher").rglob("*.safetensors"):
            halve(st)
        res = rec["results"]
        target = res.get("target", {})
        entry = {"world": world, "dir": f"retrieval/{world}", "images": len(images), "captions": len(captions),
                 "matcher": cell, "steps": int(rec["params"].get("steps", 0)), "seed": int(rec["params"].get("seed", 0)),
                 "cell": f"docs/results/cells/demo/{cell}.json",
                 "anchor_metrics": {k: (res.get("anchor") or {}).get(k) for k in ("rsum", "i2t_r1", "t2i_r1")},
                 "metrics": {k: target.get(k) for k in ("rsum", "i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")}}
        out_g.append(entry)
        for f in sorted(dst.rglob("*")):
            if f.is_file():
                files.append({"path": str(f.relative_to(out)), "world": world, "steps": entry["steps"],
                              "seed": entry["seed"], "variant": "dbl-matcher", "fid": None})
    return out_g


def _world_split(world: str) -> Any:
    """The synthetic world's test split as configured for the matching cells (seed 0, 500 test images)."""
    from imagetext.data.synthetic import load_synthetic

    return load_synthetic(world, split="test", seed=0, n_train=2000, n_test=500)


def examples() -> List[str]:
    split = _world_split("scenes")
    seen: List[str] = []
    for s in split.samples[:40]:
        c = s.captions[0]
        if c not in seen:
            seen.append(c)
    return seen[:12]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "app" / "checkpoints", help="where to pack (default app/checkpoints)")
    ap.add_argument("--pack-only", action="store_true", help="train nothing; pack the finished cells")
    ap.add_argument("--gallery-size", type=int, default=200, help="test images per retrieval gallery (default 200)")
    args = ap.parse_args(argv)

    from imagetext.encoders.weights import sha256_file

    t0 = time.time()
    if not args.pack_only:
        train(sys.executable)
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files: List[Dict[str, Any]] = []
    gens = pack_generators(tmp, files)
    gals = pack_galleries(tmp, files, args.gallery_size)
    total = 0
    for f in files:
        p = tmp / f["path"]
        f["bytes"] = p.stat().st_size
        f["sha256"] = sha256_file(p)
        total += f["bytes"]
    ref = json.loads((ROOT / "docs/results/t2i/reference_points_scenes_32.json").read_text())["rows"]
    manifest = {
        "format": "t2i-demo-checkpoints", "version": 1, "made_by": "make checkpoints (scripts/make_checkpoints.py)",
        "weights_dtype": "float16 (metrics were measured on the float32 weights before rounding)",
        "reference": {"real_fid": ref["real (other images)"]["fid"], "source": "docs/results/t2i/reference_points_scenes_32.json"},
        "bytes": total, "generators": gens, "galleries": gals, "examples": examples(), "files": files,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    if total > MAX_BYTES:
        print(f"make_checkpoints: error: {total / 2**20:.1f} MB packed, over the {MAX_BYTES / 2**20:.0f} MB budget; "
              f"left in {tmp}", file=sys.stderr)
        return 1
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(f"make_checkpoints: {len(gens)} generator(s), {len(gals)} gallery(ies), {total / 2**20:.1f} MB "
          f"in {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
