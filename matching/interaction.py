"""Interaction (cross-attention) matcher, SCAN-style text-to-image, and retrieve-then-re-rank.

Score. An image gives K region vectors r_1..r_K (the encoder's H·W grid, or its global vector
as a set of one), a caption gives T word vectors w_1..w_T (the first ``length`` are real);
both are projected to E and L2-normalised, so c_ij = cos(w_i, r_j) = w_i·r_j. Each word
attends over the regions with temperature λ (``lambda_softmax``, 9 by default)::

    α_ij = softmax_j(λ · c_ij)              (Σ_j α_ij = 1)
    a_i  = Σ_j α_ij r_j                     (the image as seen by word i)
    R_i  = cos(w_i, a_i) = (Σ_j α_ij c_ij) / sqrt(α_iᵀ G α_i),   G = [r_j·r_l] (K x K Gram)

The last form is exact (w_i is a unit vector and ‖a_i‖² = α_iᵀGα_i), so a_i (E numbers per
word and pair) is never built: every tensor is the size of the B_img x B_txt x T x K
cosine block. The caption's relevances are pooled over the real words only::

    "lse":  S = (1/λ2) · log Σ_{i ≤ length} exp(λ2 · R_i)      (λ2 = ``lambda_lse``, 6)
    "mean": S = (1/length) · Σ_{i ≤ length} R_i

optionally followed by a learned scalar affine S' = a·S + b (``affine=True``; off by default,
because with a margin loss the scale a can grow to shrink every hinge instead of learning).
Padded words are zeroed before scoring and masked out of the pooling, so whatever the padding
holds changes no score. Unlike :class:`~matching.models.EmbeddingMatcher` there is no per-item
vector to index: every pair is scored jointly, so the model is served as a re-ranker of an
embedding model's shortlist (:func:`rerank`, :func:`reranked_recall`; from precomputed features
:func:`rerank_features`, and :meth:`CrossAttentionMatcher.rerank_retrieval`, which is how
``t2i eval retrieval --rerank DIR`` reaches it without importing this package). Alone, it
ranks a gallery by scoring every pair (:func:`interaction_scores`); trained with
``scripts/train_matching.py --config configs/matching/birds_interaction_tiny.yaml`` (any
config with ``model.name: scan`` or ``scan_tiny``).

Saved diffusers-style like the embedding matcher: ``matcher.json`` (format
``matching.interaction/1``, name, arguments), ``text_encoder/``, ``image_encoder/`` and
``heads.safetensors``; registered in ``MODEL_LOADERS`` and as ``scan`` / ``scan_tiny`` in ``MATCHERS``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from imagetext.errors import ConfigError, MetricInputError, UserError
from imagetext.registry import MATCHERS, MODEL_LOADERS

from .models import EncoderPairModel

FORMAT = "matching.interaction/1"
POOLINGS = ("lse", "mean")
DEFAULT_MAX_ELEMENTS = 1 << 24  # B_img·B_txt·T·K elements per scored block (~64 MB per float32 tensor)
_EPS = 1e-8


class InteractionInputError(UserError, ValueError):
    """Inputs an interaction matcher or the re-ranker cannot use; the message says which."""


def lengths_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B,) lengths -> (B, width) bool, True on the real words; a clear error for lengths outside 1..width."""
    if lengths.dim() != 1:
        raise InteractionInputError(f"lengths must be 1-D (one per caption), got shape {tuple(lengths.shape)}")
    bad = ((lengths < 1) | (lengths > width)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise InteractionInputError(f"lengths[{i}] = {int(lengths[i])} is outside 1..{width} (the padded width)")
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


class CrossAttentionMatcher(EncoderPairModel):
    """Words attend to regions; the image-caption score pools each word's relevance (see the module docstring).

    Args:
        text_encoder, image_encoder: built ``imagetext.encoders`` modules.
        embed_dim: E, the joint space of words and regions.
        lambda_softmax: λ, the attention temperature.
        lambda_lse: λ2, the LSE pooling temperature (unused with ``pooling="mean"``).
        pooling: "lse" or "mean" over the real words.
        affine: learn a scalar scale and bias on top of the pooled score.
        max_elements: the largest B_img·B_txt·T·K block scored at once (memory bound of :meth:`score`).
        name: the registered name (recorded on save).
    """

    FORMAT = FORMAT

    def __init__(self, text_encoder: nn.Module, image_encoder: nn.Module, embed_dim: int = 256,
                 lambda_softmax: float = 9.0, lambda_lse: float = 6.0, pooling: str = "lse", affine: bool = False,
                 max_elements: int = DEFAULT_MAX_ELEMENTS, name: Optional[str] = None) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not (lambda_softmax > 0 and lambda_lse > 0):
            raise ConfigError(f"lambda_softmax and lambda_lse must be > 0, got {lambda_softmax}, {lambda_lse}")
        if int(embed_dim) < 1 or int(max_elements) < 1:
            raise ConfigError(f"embed_dim and max_elements must be >= 1, got {embed_dim}, {max_elements}")
        super().__init__(text_encoder, image_encoder, name)
        self.embed_dim = int(embed_dim)
        self.lambda_softmax, self.lambda_lse = float(lambda_softmax), float(lambda_lse)
        self.pooling, self.affine, self.max_elements = pooling, bool(affine), int(max_elements)
        self.args = {"embed_dim": self.embed_dim, "lambda_softmax": self.lambda_softmax,
                     "lambda_lse": self.lambda_lse, "pooling": pooling, "affine": self.affine}
        self.image_proj = nn.Linear(image_encoder.dim, self.embed_dim)
        self.text_proj = nn.Linear(text_encoder.dim, self.embed_dim)
        if self.affine:
            self.score_scale = nn.Parameter(torch.ones(()))
            self.score_bias = nn.Parameter(torch.zeros(()))

    # ----------------------------------------------------------------- features
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, K, E) unit region vectors."""
        feats = self.image_encoder(images)
        sets = feats.regions.flatten(2).transpose(1, 2) if feats.regions is not None else feats.global_[:, None, :]
        return F.normalize(self.image_proj(sets).float(), dim=-1)

    def encode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tokenised captions -> ((B, T, E) unit word vectors, zero on padding; (B, T) mask of real words)."""
        if tokens.dim() != 2 or tokens.shape[0] != lengths.shape[0]:
            raise InteractionInputError(f"tokens (B, T) and lengths (B,) disagree: {tuple(tokens.shape)} vs "
                                        f"{tuple(lengths.shape)}")
        lengths_mask(lengths, tokens.shape[1])  # validates before the encoder sees them
        words = self.text_encoder(tokens, lengths).words.transpose(1, 2)  # (B, T', D)
        mask = lengths_mask(lengths.to(words.device), words.shape[1])
        words = F.normalize(self.text_proj(words).float(), dim=-1)
        return words.masked_fill(~mask[..., None], 0.0), mask

    def tokenize(self, captions: Sequence[str]) -> tuple:
        return self.text_encoder.tokenize(list(captions))

    def encode_texts(self, captions: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """A list of captions -> (words, mask) as :meth:`encode_tokens`."""
        if isinstance(captions, str):
            raise TypeError("encode_texts expects a list of captions, got one string")
        tokens, lengths = self.tokenize(captions)
        return self.encode_tokens(tokens.to(self.device), lengths.to(self.device))

    # ----------------------------------------------------------------- scoring
    def attention(self, regions: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """α for every pair: regions (B_img, K, E), words (B_txt, T, E) -> (B_img, B_txt, T, K), rows sum to 1."""
        cos = torch.matmul(words[None], regions.transpose(1, 2)[:, None])  # (B_img, B_txt, T, K)
        return torch.softmax(self.lambda_softmax * cos, dim=-1)

    def _pooled(self, cos: torch.Tensor, gram: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """cos (..., T, K), gram (..., K, K) (broadcast), mask (..., T) -> score (...)."""
        alpha = torch.softmax(self.lambda_softmax * cos, dim=-1)
        num = (alpha * cos).sum(-1)
        sq = (torch.matmul(alpha, gram) * alpha).sum(-1)
        rel = num / sq.clamp_min(_EPS).sqrt()  # R_i = cos(w_i, a_i)
        if self.pooling == "lse":
            rel = rel.masked_fill(~mask, float("-inf"))
            out = torch.logsumexp(self.lambda_lse * rel, dim=-1) / self.lambda_lse
        else:
            out = rel.masked_fill(~mask, 0.0).sum(-1) / mask.sum(-1).clamp_min(1)
        if self.affine:
            out = self.score_scale * out + self.score_bias
        return out

    def score_features(self, regions: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """All pairs: (B_img, K, E), (B_txt, T, E), (B_txt, T) -> (B_img, B_txt), in blocks of ``max_elements``."""
        if (regions.dim() != 3 or words.dim() != 3 or mask.shape != words.shape[:2]
                or regions.shape[2] != words.shape[2]):
            raise InteractionInputError(f"expected regions (B_img, K, E), words (B_txt, T, E), mask (B_txt, T); got "
                                        f"{tuple(regions.shape)}, {tuple(words.shape)}, {tuple(mask.shape)}")
        mask = mask.bool()
        words = words.masked_fill(~mask[..., None], 0.0)
        n_img, k = regions.shape[:2]
        n_txt, t = words.shape[:2]
        per_txt = max(1, t * k)
        ct = max(1, min(n_txt, self.max_elements // per_txt))
        ci = max(1, min(n_img, self.max_elements // (per_txt * ct)))
        gram = torch.matmul(regions, regions.transpose(1, 2))[:, None]  # (B_img, 1, K, K)
        rows = []
        for a in range(0, n_img, ci):
            r_t = regions[a:a + ci].transpose(1, 2)[:, None]  # (ci, 1, E, K)
            cols = [self._pooled(torch.matmul(words[b:b + ct][None], r_t), gram[a:a + ci], mask[b:b + ct][None])
                    for b in range(0, n_txt, ct)]
            rows.append(torch.cat(cols, dim=1))
        return torch.cat(rows, dim=0)

    def score_feature_pairs(self, regions: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Aligned pairs: (B, K, E), (B, T, E), (B, T) -> (B,)."""
        if (regions.dim() != 3 or words.dim() != 3 or regions.shape[0] != words.shape[0]
                or mask.shape != words.shape[:2]):
            raise InteractionInputError(f"score_pairs needs as many images as captions: regions "
                                        f"{tuple(regions.shape)}, words {tuple(words.shape)}, mask {tuple(mask.shape)}")
        mask = mask.bool()
        words = words.masked_fill(~mask[..., None], 0.0)
        cos = torch.bmm(words, regions.transpose(1, 2))  # (B, T, K)
        return self._pooled(cos, torch.bmm(regions, regions.transpose(1, 2)), mask)

    def score(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Every image against every caption: (B_img, B_txt) scores."""
        words, mask = self.encode_tokens(tokens, lengths)
        return self.score_features(self.encode_images(images), words, mask)

    def score_pairs(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Image b against caption b: (B,) scores."""
        if images.shape[0] != tokens.shape[0]:
            raise InteractionInputError(f"score_pairs needs as many images ({images.shape[0]}) as captions "
                                        f"({tokens.shape[0]})")
        words, mask = self.encode_tokens(tokens, lengths)
        return self.score_feature_pairs(self.encode_images(images), words, mask)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The B x B score matrix of a batch (matching pairs on the diagonal), for the VSE/DBL losses."""
        return self.score(images, tokens, lengths)

    def rerank_retrieval(self, sims: Any, regions: torch.Tensor, captions: Sequence[str], caption_to_image: Any,
                         k: int = 20, batch_size: int = 64, ks: Sequence[int] = (1, 5, 10)) -> Dict[str, Any]:
        """Recall of retrieve-then-re-rank, for callers that cannot import :mod:`matching`.

        ``t2i eval retrieval --rerank`` (in :mod:`imagetext`) finds this method on whatever
        model folder it loaded: ``sims`` are an embedding model's (N_img, N_cap) similarities,
        ``regions`` this model's :meth:`encode_images` of the same images (N_img, K, E).
        Returns :func:`reranked_recall`'s dictionary (shortlist sizes ``k_t2i`` / ``k_i2t``
        included, each cut to its gallery).
        """
        with _eval_no_grad(self):
            words, mask = encode_caption_words(self, captions, batch_size)
        result = rerank_features(self, sims, torch.as_tensor(regions), words, mask, k)
        return reranked_recall(result, caption_to_image, ks)


MODEL_LOADERS.register(FORMAT)(lambda directory: CrossAttentionMatcher.from_pretrained(directory))


@MATCHERS.register("scan")
def scan(tokenizer: Any = None, embed_dim: int = 256, text_encoder: str = "bilstm", image_encoder: str = "damsm_cnn",
         text_kwargs: Optional[Dict[str, Any]] = None, image_kwargs: Optional[Dict[str, Any]] = None,
         **kw: Any) -> CrossAttentionMatcher:
    """SCAN t2i: BiLSTM words attend to the shared CNN's region grid; ``kw`` go to :class:`CrossAttentionMatcher`."""
    from imagetext.encoders import build_image_encoder, build_text_encoder

    t = build_text_encoder(text_encoder, tokenizer=tokenizer, **(text_kwargs or {}))
    i = build_image_encoder(image_encoder, **(image_kwargs or {}))
    kw.setdefault("name", "scan")
    return CrossAttentionMatcher(t, i, embed_dim=embed_dim, **kw)


@MATCHERS.register("scan_tiny")
def scan_tiny(tokenizer: Any = None, embed_dim: int = 16, **kw: Any) -> CrossAttentionMatcher:
    """A 16-d interaction matcher on the tiny encoders, for tests."""
    kw.setdefault("text_encoder", "bilstm_tiny")
    kw.setdefault("image_encoder", "damsm_cnn_tiny")
    kw.setdefault("name", "scan_tiny")
    return scan(tokenizer=tokenizer, embed_dim=embed_dim, **kw)


def list_interaction_matchers() -> List[str]:
    return [n for n in MATCHERS.names() if n.startswith("scan")]


# --------------------------------------------------------------------------- re-ranking
@contextlib.contextmanager
def _eval_no_grad(*models: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; each model's previous mode restored after."""
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InteractionInputError(f"k must be an integer >= 1 (the shortlist size), got {k!r}")
    return int(k)


def _stable_topk(sims: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Row-wise top-k indices in the embedding order: score descending, ties by ascending index."""
    return torch.cat([torch.sort(sims[a:a + chunk], dim=1, descending=True, stable=True)[1][:, :k]
                      for a in range(0, sims.shape[0], chunk)], dim=0)


def _rerank_rows(short: torch.Tensor, scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sort each shortlist by interaction score, descending; ties keep the embedding order."""
    order = torch.sort(scores, dim=1, descending=True, stable=True)[1]
    return short.gather(1, order), scores.gather(1, order)


def _check_images(images: Any) -> int:
    if not torch.is_tensor(images) or images.dim() != 4:
        raise InteractionInputError(f"images must be a (N, 3, H, W) tensor, got "
                                    f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    return int(images.shape[0])


def _check_captions(captions: Any) -> List[str]:
    if isinstance(captions, str):
        raise InteractionInputError("captions must be a list of strings, got one string")
    return list(captions)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InteractionInputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def encode_image_regions(model: CrossAttentionMatcher, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, K, E) region sets, ``batch_size`` images at a time (call under no_grad)."""
    n, bs = _check_images(images), _check_batch_size(batch_size)
    return torch.cat([model.encode_images(images[a:a + bs].to(model.device)) for a in range(0, n, bs)])


def encode_caption_words(model: CrossAttentionMatcher, captions: Sequence[str],
                         batch_size: int = 64) -> Tuple[torch.Tensor, torch.Tensor]:
    """Captions -> ((N, T, E) word vectors, (N, T) mask), batches padded to one width (call under no_grad)."""
    captions, bs = _check_captions(captions), _check_batch_size(batch_size)
    if not captions:
        raise InteractionInputError("no captions to encode")
    parts = [model.encode_texts(captions[a:a + bs]) for a in range(0, len(captions), bs)]
    width = max(w.shape[1] for w, _ in parts)
    words = torch.cat([F.pad(w, (0, 0, 0, width - w.shape[1])) for w, _ in parts])
    mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for _, m in parts])
    return words, mask


def interaction_scores(model: CrossAttentionMatcher, images: torch.Tensor, captions: Sequence[str],
                       batch_size: int = 64) -> torch.Tensor:
    """Every image against every caption, (N_img, N_cap) on the CPU, in eval mode without gradients.

    The full ranking an interaction model gives on its own (no shortlist): what held-out
    evaluation of a trained interaction model uses, and what re-ranking the whole gallery equals.
    """
    with _eval_no_grad(model):
        regions = encode_image_regions(model, images, batch_size)
        words, mask = encode_caption_words(model, captions, batch_size)
        return model.score_features(regions, words, mask).float().cpu()


def rerank_features(interaction_model: CrossAttentionMatcher, sims: Any, regions: torch.Tensor,
                    words: torch.Tensor, mask: torch.Tensor, k: int = 10) -> Dict[str, Any]:
    """:func:`rerank` from precomputed inputs: embedding ``sims`` (N_img, N_cap) and the interaction
    features (regions (N_img, K, E); words (N_cap, T, E) with mask (N_cap, T)).

    For callers that embed the gallery themselves (``t2i eval retrieval --rerank`` extracts the
    regions with its data loader); returns the same dictionary as :func:`rerank`.
    """
    k = _check_k(k)
    sims = torch.as_tensor(np.asarray(sims) if not torch.is_tensor(sims) else sims).float().cpu()
    if sims.dim() != 2 or 0 in sims.shape:
        raise InteractionInputError(f"sims must be a non-empty (N_images, N_captions) matrix, got {tuple(sims.shape)}")
    n_img, n_cap = sims.shape
    if regions.dim() != 3 or regions.shape[0] != n_img or words.dim() != 3 or words.shape[0] != n_cap \
            or mask.shape != words.shape[:2]:
        raise InteractionInputError(f"sims {tuple(sims.shape)} need regions ({n_img}, K, E), words ({n_cap}, T, E) and "
                                    f"mask ({n_cap}, T); got {tuple(regions.shape)}, {tuple(words.shape)}, "
                                    f"{tuple(mask.shape)}")
    if not bool(torch.isfinite(sims).all()):
        raise InteractionInputError("sims contain NaN or inf")
    k_t2i, k_i2t = min(k, n_img), min(k, n_cap)
    dev = interaction_model.device

    def pair_scores(img_idx: torch.Tensor, cap_idx: torch.Tensor) -> torch.Tensor:
        i, c = img_idx.reshape(-1), cap_idx.reshape(-1)
        out = [interaction_model.score_feature_pairs(regions[i[a:a + 4096]].to(dev), words[c[a:a + 4096]].to(dev),
                                                     mask[c[a:a + 4096]].to(dev)) for a in range(0, len(i), 4096)]
        return torch.cat(out).float().cpu().reshape(img_idx.shape)

    with _eval_no_grad(interaction_model):
        short_t2i = _stable_topk(sims.T, k_t2i)  # (N_cap, k) images
        caps = torch.arange(n_cap)[:, None].expand_as(short_t2i)
        t2i, t2i_scores = _rerank_rows(short_t2i, pair_scores(short_t2i, caps))
        short_i2t = _stable_topk(sims, k_i2t)  # (N_img, k) captions
        imgs = torch.arange(n_img)[:, None].expand_as(short_i2t)
        i2t, i2t_scores = _rerank_rows(short_i2t, pair_scores(imgs, short_i2t))
    return {"sims": sims, "t2i": t2i, "t2i_scores": t2i_scores, "i2t": i2t, "i2t_scores": i2t_scores,
            "k_t2i": k_t2i, "k_i2t": k_i2t, "n_images": n_img, "n_captions": n_cap}


def rerank(embedding_model: Any, interaction_model: CrossAttentionMatcher, images: torch.Tensor,
           captions: Sequence[str], k: int = 10, batch_size: int = 64) -> Dict[str, Any]:
    """Retrieve with the embedding model, re-rank each query's top-k with the interaction model.

    For each caption the embedding model's k best images (``embed_images @ embed_texts.T``,
    ties by index) are re-scored with ``interaction_model`` and sorted by that score; the same
    for each image over the captions. The final ranking of a query is its re-ranked shortlist,
    then every item outside the shortlist **in the embedding order** (the re-ranker only
    permutes the shortlist; :func:`full_ranking` builds whole lists, :func:`reranked_recall`
    the recall). k above a gallery's size is cut to it (k = gallery size re-ranks everything).
    Both models run in eval mode without gradients; their modes are restored after.

    Args:
        embedding_model: has ``embed_images`` and ``embed_texts`` (an :class:`~matching.models.EmbeddingMatcher`).
        interaction_model: a :class:`CrossAttentionMatcher`.
        images: (N_img, 3, H, W) in [-1, 1]; captions: N_cap strings.
        k: shortlist size (>= 1); batch_size: images / captions encoded at once.

    Returns:
        {"sims": (N_img, N_cap) embedding similarities (CPU float32),
         "t2i": (N_cap, k_t2i) image indices, final order; "t2i_scores": their interaction scores,
         "i2t": (N_img, k_i2t) caption indices; "i2t_scores", "k_t2i", "k_i2t", "n_images", "n_captions"}.
    """
    k = _check_k(k)
    captions = _check_captions(captions)
    n_img, n_cap = _check_images(images), len(captions)
    if n_img == 0 or n_cap == 0:
        raise InteractionInputError(f"empty gallery: {n_img} images, {n_cap} captions")
    bs = _check_batch_size(batch_size)
    emb_dev = next(embedding_model.parameters()).device
    with _eval_no_grad(embedding_model, interaction_model):
        img_emb = torch.cat([embedding_model.embed_images(images[a:a + bs].to(emb_dev)).float()
                             for a in range(0, n_img, bs)])
        txt_emb = torch.cat([embedding_model.embed_texts(captions[a:a + bs]).float() for a in range(0, n_cap, bs)])
        sims = (img_emb @ txt_emb.T).cpu()
        regions = encode_image_regions(interaction_model, images, bs)
        words, mask = encode_caption_words(interaction_model, captions, bs)
    return rerank_features(interaction_model, sims, regions, words, mask, k)


def _direction(result: Dict[str, Any], direction: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(shortlists, query x gallery embedding sims) of one direction."""
    if direction not in ("t2i", "i2t"):
        raise InteractionInputError(f"direction must be 't2i' or 'i2t', got {direction!r}")
    sims = result["sims"]
    return result[direction], (sims.T if direction == "t2i" else sims)


def full_ranking(result: Dict[str, Any], direction: str = "t2i") -> torch.Tensor:
    """Whole final lists (N_query, N_gallery): the re-ranked shortlist, then the rest in the embedding order.

    Builds N_query x N_gallery indices: for inspection and small galleries; recall needs only
    :func:`reranked_recall`.
    """
    short, sims = _direction(result, direction)
    order = torch.sort(sims, dim=1, descending=True, stable=True)[1]
    rest = order[:, short.shape[1]:]  # the embedding top-k is exactly the shortlist's set
    return torch.cat([short, rest], dim=1)


def _ranks(short: torch.Tensor, sims: torch.Tensor, query: torch.Tensor, item: torch.Tensor,
           chunk: int = 1024) -> torch.Tensor:
    """1-based rank of ``item[p]`` in the final list of ``query[p]`` for each pair p."""
    out = torch.empty(len(query), dtype=torch.long)
    k = short.shape[1]
    for a in range(0, len(query), chunk):
        q, g = query[a:a + chunk], item[a:a + chunk]
        hit = short[q] == g[:, None]  # (n, k)
        rows = sims[q]  # (n, N_gallery)
        s = rows.gather(1, g[:, None])
        before = (rows > s) | ((rows == s) & (torch.arange(rows.shape[1])[None, :] < g[:, None]))
        emb_rank = before.sum(1) + 1  # position in the embedding order (> k when not shortlisted)
        pos = hit.float().argmax(1) + 1
        out[a:a + chunk] = torch.where(hit.any(1), pos, emb_rank)
        if not bool((emb_rank[~hit.any(1)] > k).all()):
            raise MetricInputError("the shortlists disagree with the embedding order of result['sims']")
    return out


def reranked_ranks(result: Dict[str, Any], caption_to_image: Any) -> Tuple[np.ndarray, np.ndarray]:
    """(i2t ranks per image: best rank among its captions; t2i ranks per caption), 1-based, of the final lists."""
    n_img, n_cap = result["n_images"], result["n_captions"]
    c2i = torch.as_tensor(np.asarray(caption_to_image))
    if c2i.dim() != 1 or c2i.shape[0] != n_cap:
        raise MetricInputError(f"caption_to_image has shape {tuple(c2i.shape)} but there are {n_cap} captions")
    if c2i.is_floating_point() or c2i.dtype == torch.bool:
        raise MetricInputError(f"caption_to_image must hold integer image indices, got {c2i.dtype}")
    c2i = c2i.long()
    if len(c2i) and (c2i.min() < 0 or c2i.max() >= n_img):
        raise MetricInputError(f"caption_to_image has indices outside 0..{n_img - 1}")
    uncaptioned = torch.ones(n_img, dtype=torch.bool)
    uncaptioned[c2i] = False
    if uncaptioned.any():
        raise MetricInputError(f"image {int(uncaptioned.nonzero()[0])} has no caption (i2t rank undefined)")
    caps = torch.arange(n_cap)
    t2i = _ranks(*_direction(result, "t2i"), caps, c2i)
    cap_ranks = _ranks(*_direction(result, "i2t"), c2i, caps)
    i2t = torch.full((n_img,), n_cap + 1, dtype=torch.long).scatter_reduce(0, c2i, cap_ranks, reduce="amin")
    return i2t.numpy(), t2i.numpy()


def reranked_recall(result: Dict[str, Any], caption_to_image: Any, ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """R@K / medr / meanr / rSum of the re-ranked lists, keyed like :func:`imagetext.metrics.retrieval_recall`.

    Ranks are positions in the final lists (shortlist re-ranked, the rest in embedding order),
    so ties are broken, not counted pessimistically; with k = gallery size and no tied scores
    this equals ``retrieval_recall`` of the interaction scores.
    """
    from imagetext.metrics.retrieval import recall_from_ranks

    ks = tuple(int(x) for x in ks)
    if not ks or min(ks) < 1:
        raise MetricInputError(f"ks must be positive integers, got {ks}")
    i2t, t2i = reranked_ranks(result, caption_to_image)
    out: Dict[str, Any] = recall_from_ranks(i2t, t2i, ks)
    out.update(n_images=result["n_images"], n_captions=result["n_captions"], k_t2i=result["k_t2i"],
               k_i2t=result["k_i2t"])
    return out
