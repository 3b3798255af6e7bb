"""Check that a synthetic world is not trivially easy: train a tiny dual encoder, report retrieval.

A small GRU text encoder and a small CNN image encoder are trained with symmetric
InfoNCE for a fixed wall-clock budget on CPU, then evaluated on 1K test images:
text-to-image with each test image's first caption, image-to-text against all test
captions (R@1/5/10). It also reports the *ambiguity ceiling*: the t2i R@1 a perfect
reader of the captions would get, ranking at random among the test images that match
everything the caption says (from ``caption_attributes``). Seeded:

    python scripts/calibrate_synthetic.py --world birds
    python scripts/calibrate_synthetic.py --world scenes
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from imagetext.data.synthetic import load_synthetic


def tokenize(text: str) -> List[str]:
    return re.findall(r"[a-z\-]+", text.lower())


class NgramTextEncoder(nn.Module):
    """Mean of hashed word 1-, 2- and 3-gram embeddings -> MLP (a bag of words that still binds
    "red wings" vs "red body"; cheap enough for a shared CPU)."""

    def __init__(self, dim: int = 128, buckets: int = 2**15) -> None:
        super().__init__()
        self.buckets = buckets
        self.bag = nn.EmbeddingBag(buckets, dim, mode="sum")  # weighted sum = mean over real n-grams
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        grams = [ids]
        for n in (2, 3):  # hash n-grams of word ids; n-grams touching padding are dropped below
            g = ids[:, : ids.shape[1] - n + 1].clone()
            valid = ids[:, n - 1:] > 0
            for k in range(1, n):
                g = g * 1000003 + ids[:, k: ids.shape[1] - n + 1 + k]
            grams.append(torch.where(valid, g % (self.buckets - 1) + 1, torch.zeros_like(g)))
        flat = torch.cat(grams, 1)
        weights = (flat > 0).float()
        return self.mlp(self.bag(flat, per_sample_weights=weights / weights.sum(1, keepdim=True).clamp(min=1)))


class GRUTextEncoder(nn.Module):
    """Word embeddings -> GRU -> mean over words -> linear."""

    def __init__(self, dim: int = 128, vocab: int = 1000, emb: int = 64) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.gru = nn.GRU(emb, dim, batch_first=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids[:, : int((ids > 0).sum(1).max())]  # trim padding columns
        mask = (ids > 0).float().unsqueeze(-1)
        h, _ = self.gru(self.emb(ids))
        return self.proj((h * mask).sum(1) / mask.sum(1).clamp(min=1))


class ImageEncoder(nn.Module):
    """Stride-2 conv blocks -> global average pool -> linear."""

    def __init__(self, dim: int = 128, width: int = 24) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: List[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
            layers += [nn.Conv2d(cin, cout, 3, 2 if i < 3 else 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.proj = nn.Linear(chans[-1], dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x).mean((2, 3)))


def render_all(samples: Sequence[Any]) -> torch.Tensor:
    arr = np.stack([np.asarray(s.load_image()) for s in samples])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,H,W


def encode_captions(caps: Sequence[str], vocab: Dict[str, int], max_len: int = 40) -> torch.Tensor:
    out = torch.zeros(len(caps), max_len, dtype=torch.long)
    for i, c in enumerate(caps):
        ids = [vocab.get(w, 1) for w in tokenize(c)][:max_len]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1.0)


def matches(world: str, mentioned: Dict[str, Any], gt: Dict[str, Any]) -> bool:
    """Whether an image with ground truth ``gt`` shows everything a caption mentions."""
    if world == "birds":
        return all(gt[k] == v for k, v in mentioned.items())
    by_cat = {o["category"]: (i, o) for i, o in enumerate(gt["objects"])}
    idx = []
    for m in mentioned["objects"]:
        if m["category"] not in by_cat:
            return False
        i, o = by_cat[m["category"]]
        if any(o[k] != v for k, v in m.items()):
            return False
        idx.append(i)
    return all({"subject": idx[r["subject"]], "relation": r["relation"], "object": idx[r["object"]]}
               in gt["relations"] for r in mentioned["relations"])


def recall(ranks: np.ndarray) -> Dict[str, float]:
    return {f"R@{k}": round(float((ranks < k).mean() * 100), 2) for k in (1, 5, 10)}


def evaluate(img_enc: nn.Module, txt_enc: nn.Module, images: torch.Tensor, caps: List[List[str]],
             vocab: Dict[str, int]) -> Tuple[Dict[str, float], Dict[str, float]]:
    img_enc.eval()
    txt_enc.eval()
    with torch.no_grad():
        iv = F.normalize(torch.cat([img_enc(to_float(b)) for b in images.split(256)]), dim=-1)
        flat = [c for cs in caps for c in cs]
        owner = torch.tensor([i for i, cs in enumerate(caps) for _ in cs])
        tv = F.normalize(torch.cat([txt_enc(b) for b in encode_captions(flat, vocab).split(512)]), dim=-1)
    # text -> image: each image's first caption is the query
    first = torch.tensor([sum(len(c) for c in caps[:i]) for i in range(len(caps))])
    sim = tv[first] @ iv.T
    t2i = (sim > sim.diag().unsqueeze(1)).sum(1).numpy()
    # image -> text: the best-ranked of the image's own captions counts
    sim_it = iv @ tv.T
    own_best = torch.full((len(caps),), -2.0).scatter_reduce(0, owner, sim_it[owner, torch.arange(len(flat))], "amax")
    i2t = (sim_it > own_best.unsqueeze(1)).sum(1).numpy()
    return recall(t2i), recall(i2t)


def run(world: str, a: argparse.Namespace) -> Dict[str, Any]:
    t0 = time.time()
    torch.manual_seed(a.seed)
    rng = np.random.RandomState(a.seed)
    train = load_synthetic(world, "train", n=a.n_train, seed=a.world_seed, size=a.size)
    test = load_synthetic(world, "test", n=a.n_test, seed=a.world_seed, size=a.size)
    xtr, xte = render_all(train.samples), render_all(test.samples)
    t_render = time.time() - t0
    words = sorted({w for s in train.samples for c in s.captions for w in tokenize(c)})
    vocab = {w: i + 2 for i, w in enumerate(words)}  # 0 = padding, 1 = unknown
    cap_ids = [encode_captions(s.captions, vocab) for s in train.samples]
    ncap = len(train.samples[0].captions)
    all_ids = torch.stack(cap_ids)  # N, ncap, L

    img_enc = ImageEncoder(a.dim, a.width)
    txt_enc = NgramTextEncoder(a.dim) if a.text == "ngram" else GRUTextEncoder(a.dim, len(vocab) + 2)
    logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    params = list(img_enc.parameters()) + list(txt_enc.parameters()) + [logit_scale]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    steps, t_train = 0, time.time()
    img_enc.train()
    txt_enc.train()
    while time.time() - t_train < a.train_seconds:
        idx = torch.from_numpy(rng.randint(0, len(xtr), a.batch))
        # one random caption per image; repeated images in a batch are rare enough to ignore
        ids = all_ids[idx, torch.from_numpy(rng.randint(0, ncap, a.batch))]
        x = to_float(xtr[idx])  # no flip augmentation: it would falsify "left of" captions
        iv, tv = F.normalize(img_enc(x), dim=-1), F.normalize(txt_enc(ids), dim=-1)
        logits = logit_scale.exp().clamp(max=100) * iv @ tv.T
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    t_train = time.time() - t_train
    t2i, i2t = evaluate(img_enc, txt_enc, xte, [s.captions for s in test.samples], vocab)
    gts = [s.attributes for s in test.samples]
    n_match = [sum(matches(world, s.caption_attributes[0], g) for g in gts) for s in test.samples]
    ceiling = round(float(np.mean([1.0 / max(1, k) for k in n_match]) * 100), 2)
    return {
        "world": world, "size": a.size, "n_train": a.n_train, "n_test": a.n_test, "world_seed": a.world_seed,
        "seed": a.seed, "text_encoder": a.text, "steps": steps, "batch": a.batch, "final_loss": round(loss.item(), 4),
        "t2i": t2i, "i2t": i2t, "t2i_R@1_ceiling": ceiling,
        "median_images_matching_first_caption": float(np.median(n_match)),
        "seconds": {"render": round(t_render, 1), "train": round(t_train, 1), "total": round(time.time() - t0, 1)},
    }


def save_grid(world: str, path: Path, size: int, seed: int, rows: int = 4, cols: int = 8) -> None:
    """A grid of the first test images (the figures in docs/SYNTHETIC.md)."""
    from PIL import Image

    samples = load_synthetic(world, "test", n=rows * cols, seed=seed, size=size).samples
    grid = Image.new("RGB", (cols * size + (cols + 1) * 2, rows * size + (rows + 1) * 2), (255, 255, 255))
    for i, s in enumerate(samples):
        grid.paste(s.load_image(), (2 + (i % cols) * (size + 2), 2 + (i // cols) * (size + 2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=["birds", "scenes"], required=True)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-seconds", type=float, default=200.0, help="wall-clock training budget")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=24, help="CNN width")
    p.add_argument("--text", choices=["ngram", "gru"], default="ngram", help="text encoder")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    p.add_argument("--grid", type=Path, default=None, help="only save a grid of example test images here")
    p.add_argument("--grid-size", type=int, default=96)
    a = p.parse_args(argv)
    if a.grid:
        save_grid(a.world, a.grid, a.grid_size, a.world_seed)
        return 0
    torch.set_num_threads(a.threads)
    result = run(a.world, a)
    result["command"] = "python scripts/calibrate_synthetic.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps(result, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
