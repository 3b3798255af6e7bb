"""Held-out scores of a pretrained encoder pair: retrieval, R-precision, label k-NN.

- **Retrieval** (images × all their captions, cosine): text-to-image and image-to-text
  R@1 / R@5 / R@10 in percent, with the project's tie rule (``imagetext.metrics.retrieval``).
- **R-precision** (AttnGAN protocol, ``imagetext.metrics.rprecision``): each image's first
  caption against 99 mismatched ones.
- **Label k-NN**: leave-one-out k nearest neighbours by cosine among the held-out
  embeddings. Single-label: accuracy of the majority class (ties: the nearer class).
  Multi-label: label precision@k, the share of the k neighbours that have a category in
  common with the anchor. ``knn_chance`` is the same number for random neighbours (the
  most frequent class's share; the share of pairs with a common category). Does label
  guidance cluster same-label pairs? This says.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch


@torch.no_grad()
def embed_split(text_enc: Any, image_enc: Any, split: Any, image_size: int, batch_size: int = 100,
                max_images: int | None = None) -> Dict[str, Any]:
    """Global image embeddings, sentence embeddings of every caption, and the caption -> image map."""
    from imagetext.data.dataset import ImageTextDataset

    text_enc.eval()
    image_enc.eval()
    ds = ImageTextDataset(split, image_size=image_size, train=False, two_captions=False)
    n = len(ds) if max_images is None else min(max_images, len(ds))
    dev = next(image_enc.parameters()).device
    imgs: List[np.ndarray] = []
    for a in range(0, n, batch_size):
        x = torch.stack([ds[i]["image"] for i in range(a, min(a + batch_size, n))]).to(dev)
        imgs.append(image_enc(x).global_.float().cpu().numpy())
    caps = [(i, c) for i in range(n) for c in split.samples[i].captions]
    txts: List[np.ndarray] = []
    for a in range(0, len(caps), batch_size):
        txts.append(text_enc.encode_text([c for _, c in caps[a:a + batch_size]]).sentence.float().cpu().numpy())
    first = np.array([k for k, (i, _) in enumerate(caps) if k == 0 or caps[k - 1][0] != i])
    return {"image": np.concatenate(imgs), "text": np.concatenate(txts),
            "caption_to_image": np.array([i for i, _ in caps]), "first_caption": first,
            "captions": [c for _, c in caps], "samples": split.samples[:n]}


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_label_score(emb: np.ndarray, labels: List[tuple], multi_label: bool, k: int = 10) -> float:
    """Leave-one-out k-NN accuracy (single-label) or label precision@k (multi-label); see the module docstring."""
    z = _normalise(emb.astype(np.float64))
    sims = z @ z.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(z) - 1)
    nn_idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    scores = []
    for i, row in enumerate(nn_idx):
        truth = set(labels[i])
        if not truth:
            continue
        if not multi_label:
            votes: Dict[int, List[int]] = {}
            for rank, j in enumerate(row):
                if labels[j]:
                    votes.setdefault(labels[j][0], []).append(rank)
            if not votes:
                continue
            best = max(votes, key=lambda c: (len(votes[c]), -min(votes[c])))
            scores.append(float(best in truth))
        else:
            scores.append(float(np.mean([bool(truth & set(labels[j])) for j in row])))
    return float(np.mean(scores)) if scores else float("nan")


def knn_chance(labels: List[tuple], multi_label: bool) -> float:
    """What :func:`knn_label_score` gives for neighbours drawn at random: the bar a number must clear.

    Single-label: the accuracy of always naming the most frequent class; multi-label: the
    share of (anchor, other) pairs that have a category in common.
    """
    from collections import Counter

    if not multi_label:
        counts = Counter(lab[0] for lab in labels if lab)
        return counts.most_common(1)[0][1] / sum(counts.values()) if counts else float("nan")
    sets = [set(lab) for lab in labels]
    shares = [np.mean([bool(a & b) for j, b in enumerate(sets) if j != i]) for i, a in enumerate(sets) if a]
    return float(np.mean(shares)) if shares else float("nan")


def evaluate_pair(text_enc: Any, image_enc: Any, split: Any, image_size: int, multi_label: bool, k: int = 10,
                  folds: int = 10, batch_size: int = 100, max_images: int | None = None, seed: int = 0) -> Dict[str, Any]:
    """Every held-out number of docs/RESULTS.md's pretraining table, for one encoder pair."""
    from imagetext.errors import MetricInputError
    from imagetext.metrics.retrieval import EmbeddingSimilarity, retrieval_recall
    from imagetext.metrics.rprecision import r_precision

    e = embed_split(text_enc, image_enc, split, image_size, batch_size, max_images)
    n = len(e["image"])
    rec = retrieval_recall(EmbeddingSimilarity(e["image"], e["text"], normalize=True), e["caption_to_image"])
    out: Dict[str, Any] = {"n_images": n, "n_captions": len(e["text"])}
    for key in ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10", "rsum"):
        out[key] = rec[key]
    first = e["text"][e["first_caption"]]
    caps = [e["captions"][j] for j in e["first_caption"]]
    try:
        rp = r_precision(e["image"], first, caption_ids=np.unique(caps, return_inverse=True)[1],
                         folds=min(folds, n), seed=seed)
        out["r_precision"], out["r_precision_std"] = rp["r_precision"], rp["r_precision_std"]
    except MetricInputError as err:  # too few distinct captions for 99 mismatched ones: say so, no number
        out["r_precision_skipped"] = str(err)
    labels = [tuple(s.labels) for s in e["samples"]]
    out["knn_text"] = knn_label_score(first, labels, multi_label, k)
    out["knn_image"] = knn_label_score(e["image"], labels, multi_label, k)
    out["knn_chance"] = knn_chance(labels, multi_label)
    out["knn_k"] = k
    return out
