"""A sheet of samples: test prompts in rows, the real image and each model's sample in columns.

    python scripts/sample_sheet.py --model baseline=runs/bench/t2i/dfgan_scenes-seed0/run \
        --model _scl=runs/bench/t2i/dfgan_scenes_scl-seed0/run --n 8 --seed 0 --out docs/figures/sheet.png

Every model draws the same prompts (the first caption of the first ``--n`` test images of the
data its run was trained on, read from the run's ``config.yaml``) with the same seed, so the
columns differ only by the model: what a FID number looks like. Images are enlarged
``--scale`` times (nearest neighbour) so that 32 px samples stay readable.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import List, Tuple


def _split_of(run: Path, n: int) -> Tuple[List[str], "object"]:
    """(prompts, real images in [-1, 1]) of the first ``n`` test images of ``run``'s data."""
    from imagetext.config import from_dict, load_yaml
    from imagetext.data.config import DataConfig, build_split
    from imagetext.errors import UserError
    from t2i.gan.evaluate import split_images

    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path}: missing (give a training run folder, the one holding final/)")
    cfg = load_yaml(cfg_path)
    data = from_dict(DataConfig, cfg.get("data", {}), where=f"{cfg_path}: data")
    split = build_split(data, "test")
    imsize = int(cfg.get("model", {}).get("imsize", data.image_size))
    return [s.captions[0] for s in split.samples[:n]], split_images(split, imsize, n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=RUN",
                   help="a column: a training run folder holding final/ (repeat; the first one's data gives the prompts)")
    p.add_argument("--n", type=int, default=8, help="prompts (rows, default 8)")
    p.add_argument("--seed", type=int, default=0, help="noise seed, the same for every model (default 0)")
    p.add_argument("--scale", type=int, default=3, help="enlargement of each image (default 3)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    a = p.parse_args(argv)
    if a.n < 1 or a.scale < 1:
        p.error("--n and --scale must be >= 1")
    cols = []
    for spec in a.model:
        if "=" not in spec:
            p.error(f"--model {spec!r}: expected NAME=RUN")
        name, run = spec.split("=", 1)
        cols.append((name, Path(run)))

    import torch
    from PIL import Image, ImageDraw

    from imagetext.errors import UserError
    from t2i.gan.pipeline import T2IPipeline

    try:
        prompts, real = _split_of(cols[0][1], a.n)
        images = [("real", real)]
        for name, run in cols:
            pipe = T2IPipeline.from_pretrained(run / "final")
            images.append((name, pipe.generate_tensors(prompts, seed=a.seed, num_images=1)))
    except UserError as e:
        print(f"sample_sheet: {e}", file=sys.stderr)
        return 2
    side = real.shape[-1] * a.scale
    text_w, head_h, pad = 220, 18, 4
    sheet = Image.new("RGB", (text_w + len(images) * (side + pad), head_h + len(prompts) * (side + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (name, _) in enumerate(images):
        draw.text((text_w + j * (side + pad), 2), name, fill="black")
    for i, prompt in enumerate(prompts):
        y = head_h + i * (side + pad)
        draw.multiline_text((2, y), "\n".join(textwrap.wrap(prompt, 36)[:5]), fill="black")
        for j, (_, imgs) in enumerate(images):
            x = ((imgs[i].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
            tile = Image.fromarray(x).resize((side, side), Image.NEAREST)
            sheet.paste(tile, (text_w + j * (side + pad), y))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(a.out)
    print(f"sample_sheet: {len(prompts)} prompts x {len(images)} columns -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
