"""Where a generator's validation numbers sit: FID/KID of degraded *real* images against the test split.

    python scripts/fid_reference_points.py --world scenes --imsize 32 --n 500 --json
    python scripts/fid_reference_points.py --world scenes --test-extractors inception --real-cache runs/cache/real --json

The same scorer the GAN trainer uses (``t2i.gan.evaluate.GeneratedScorer``: synth features,
the first ``--n`` test images) against: other real images (``--n`` training images: the floor),
real images blurred through 8x8 and 4x4, and flat grey. Faithfulness is scored against each
test image's own prompt, so for the real-image rows it uses the test images themselves.
``--test-extractors inception`` adds Inception FID/KID (the benchmark cells' second opinion),
and every row has the synth evaluator's IS.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=["birds", "scenes"], default="scenes")
    p.add_argument("--imsize", type=int, default=32)
    p.add_argument("--n", type=int, default=500, help="test images (and training images for the floor)")
    p.add_argument("--n-train", type=int, default=2000, help="synthetic training split size (as the t2i presets)")
    p.add_argument("--test-extractors", default="", metavar="NAMES",
                   help="more extractors, comma-separated (e.g. inception), as eval.test_extractors of a GAN run")
    p.add_argument("--real-cache", default=None, metavar="DIR", help="cache of real-set features (eval.real_cache)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from imagetext.data.config import DataConfig
    from imagetext.train.data import load_splits
    from t2i.gan.evaluate import GeneratedScorer, split_images

    data = DataConfig(source=a.world, image_size=a.imsize)
    data.synthetic.n_train, data.synthetic.n_test = a.n_train, a.n
    train, test = load_splits(data, "test")
    from imagetext.errors import UserError

    extra = [x for x in a.test_extractors.split(",") if x]
    try:
        scorer = GeneratedScorer(test, imsize=a.imsize, n=a.n, world=a.world, extra_extractors=extra,
                                 real_cache=a.real_cache)
    except UserError as e:
        print(f"fid_reference_points: --test-extractors: {e}", file=sys.stderr)
        return 2
    own = split_images(test, a.imsize, a.n)
    other = split_images(train, a.imsize, a.n)

    def blur(x, s):
        return F.interpolate(F.interpolate(x, size=s, mode="area"), size=a.imsize, mode="bilinear", align_corners=False)

    rows = {
        "real (other images)": scorer(lambda c, s: other),
        "real (the test images: faithfulness ceiling)": scorer(lambda c, s: own),
        "real blurred 8x8": scorer(lambda c, s: blur(own, 8)),
        "real blurred 4x4": scorer(lambda c, s: blur(own, 4)),
        "flat grey": scorer(lambda c, s: torch.zeros_like(own)),
    }
    out = {"world": a.world, "imsize": a.imsize, "n": a.n, "extractor": "synth", "test_extractors": extra, "rows": rows}
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        for k, v in rows.items():
            more = "".join(f"  {x} FID {v[x + '_fid']:7.1f} KID {v[x + '_kid']:6.3f}" for x in extra)
            print(f"{k:48s} FID {v['fid']:8.1f}  KID {v['kid']:7.3f}  IS {v['is']:5.2f}  "
                  f"faithfulness {v.get('faithfulness', float('nan')):.3f}{more}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
