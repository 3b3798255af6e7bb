"""2-D projection of held-out text embeddings, coloured by class, one panel per pretrained run.

    python scripts/plot_embeddings.py --world birds \
        --run plain=runs/bench/pretrain/birds-plain-seed0/run \
        --run supcon=runs/bench/pretrain/birds-supcon-seed0/run \
        --out docs/figures/pretrain_text_embeddings.png

Each run folder holds ``final/text_encoder`` (``scripts/pretrain.py`` writes it). The first
caption of each test image of the ``--classes`` most frequent classes is embedded and
projected with t-SNE (scikit-learn; PCA without it), with the same seed for every panel.
The label k-NN score of the same embeddings is printed in each panel's title, so the
picture and the number in docs/RESULTS.md can be read together.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR", help="a pretraining run folder (repeat)")
    p.add_argument("--world", default="birds", choices=["birds", "scenes"], help="synthetic world (default birds)")
    p.add_argument("--n-test", type=int, default=500, help="test images of the world drawn (default 500)")
    p.add_argument("--classes", type=int, default=10, help="most frequent classes shown (default 10)")
    p.add_argument("--seed", type=int, default=0, help="projection seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    a = p.parse_args(argv)

    from imagetext.bench.figures import pyplot, save_figure

    plt = pyplot()
    import torch

    from imagetext.data.synthetic import load_synthetic
    from imagetext.encoders import load_encoder
    from t2i.pretrain.evaluate import knn_label_score

    split = load_synthetic(a.world, "test", n=a.n_test, n_test=a.n_test)
    first = [s.labels[0] if s.labels else -1 for s in split.samples]  # scenes: colour by the first category
    top = [c for c, _ in Counter(x for x in first if x >= 0).most_common(a.classes)]
    keep = [i for i, c in enumerate(first) if c in top]
    caps = [split.samples[i].captions[0] for i in keep]
    colours = np.array([top.index(first[i]) for i in keep])
    runs = [r.split("=", 1) for r in a.run]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 5.0), squeeze=False)
    for ax, (name, folder) in zip(axes[0], runs):
        enc = load_encoder(Path(folder) / "final" / "text_encoder").eval()
        with torch.no_grad():
            emb = np.concatenate([enc.encode_text(caps[i:i + 200]).sentence.float().numpy() for i in range(0, len(caps), 200)])
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        try:
            from sklearn.manifold import TSNE

            xy = TSNE(n_components=2, random_state=a.seed, init="pca", perplexity=30).fit_transform(emb)
            how = "t-SNE"
        except ImportError:
            xy = (emb - emb.mean(0)) @ np.linalg.svd(emb - emb.mean(0), full_matrices=False)[2][:2].T
            how = "PCA"
        knn = knn_label_score(emb, [(c,) for c in colours], multi_label=False, k=10)
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, cmap="tab10", s=9, alpha=0.8)
        ax.set_title(f"{name}: label 10-NN {knn:.2f} (these {len(keep)} captions)", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    names = split.class_names
    fig.suptitle(f"{a.world}: held-out text embeddings ({how}), coloured by the {len(top)} most frequent classes "
                 f"({', '.join(names[c] for c in top[:4])}, ...)", fontsize=10)
    save_figure(fig, a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
