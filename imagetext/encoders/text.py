"""Text encoders: DAMSM's BiLSTM, any local transformers model, and the open_clip text tower.

Every builder registered in :data:`~imagetext.registry.TEXT_ENCODERS` accepts ``dim``
(the feature size D) and ``tokenizer`` (a :class:`~imagetext.tokenizer.WordTokenizer`;
required by word-vocabulary encoders, ignored by those with their own sub-word
tokenizer; see :func:`needs_word_vocab`). Heavy libraries are imported lazily so that
listing the registry stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..errors import ConfigError
from ..registry import TEXT_ENCODERS
from ..tokenizer import WordTokenizer
from .base import VOCAB_NAME, TextEncoder, TextFeatures, lengths_to_mask
from .weights import resolve_hf_model


def _named(model: TextEncoder, name: str) -> TextEncoder:
    model.registered_name = name
    return model


def needs_word_vocab(name: str) -> bool:
    """True if text encoder ``name`` needs a WordTokenizer built from training captions."""
    return bool(getattr(TEXT_ENCODERS.get(name), "uses_word_vocab", False))


# ------------------------------------------------------------------ BiLSTM
class BiLSTMTextEncoder(TextEncoder):
    """DAMSM text encoder: word embedding -> dropout -> bidirectional LSTM (packed sequences).

    Word features are the LSTM outputs (``D x T``, D/2 per direction); the sentence
    feature is the final hidden state of both directions concatenated.

    Args:
        vocab_size: embedding rows (``tokenizer.vocab_size``); id 0 is padding.
        dim: D, the output feature size (even).
        embed_dim: word embedding size (300 in AttnGAN).
        num_layers: stacked LSTM layers.
        dropout: dropout on the embeddings and between LSTM layers (0.5 in AttnGAN).
        max_len: captions are truncated to this many words by :meth:`tokenize`.
        tokenizer: the vocabulary, needed by :meth:`encode_text` and saved as ``vocab.json``.
    """

    uses_word_vocab = True

    def __init__(
        self,
        vocab_size: int,
        dim: int = 256,
        embed_dim: int = 300,
        num_layers: int = 1,
        dropout: float = 0.5,
        max_len: int = 18,
        tokenizer: Optional[WordTokenizer] = None,
    ) -> None:
        super().__init__()
        if dim % 2:
            raise ConfigError(f"bilstm: dim must be even (D/2 per direction), got {dim}")
        if tokenizer is not None and tokenizer.vocab_size != vocab_size:
            raise ConfigError(f"bilstm: vocab_size {vocab_size} != tokenizer vocab size {tokenizer.vocab_size}")
        self._record_config(
            vocab_size=vocab_size, dim=dim, embed_dim=embed_dim, num_layers=num_layers, dropout=dropout, max_len=max_len
        )
        self.dim = dim
        self.max_len = max_len
        self.tokenizer = tokenizer
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embed_dim, dim // 2, num_layers=num_layers, batch_first=True, bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def tokenize(self, captions: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.tokenizer is None:
            raise ConfigError("bilstm: no tokenizer attached; build one with WordTokenizer.build(train_captions)")
        return self.tokenizer.encode_batch(captions, self.max_len)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> TextFeatures:  # type: ignore[override]
        """``tokens`` B x T word ids (0 = pad), ``lengths`` B (>= 1) -> features with T columns."""
        if (lengths < 1).any():
            rows = (lengths < 1).nonzero().flatten().tolist()
            raise ValueError(
                f"bilstm: caption(s) at batch rows {rows} have no tokens; encode empty captions as one "
                "<unk> (WordTokenizer.encode_batch does) or drop them"
            )
        width = tokens.shape[1]
        emb = self.drop(self.embedding(tokens))
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=width)
        words = out.transpose(1, 2).contiguous()  # B x D x T
        sentence = torch.cat([h[-2], h[-1]], dim=1)  # last layer, forward + backward
        return TextFeatures(words=words, sentence=sentence, mask=lengths_to_mask(lengths.to(tokens.device), width))

    def _save_extra(self, directory: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save(directory / VOCAB_NAME)

    @classmethod
    def _reload_kwargs(cls, args: Dict[str, Any], directory: Path) -> Dict[str, Any]:
        vocab = directory / VOCAB_NAME
        return {**args, "tokenizer": WordTokenizer.load(vocab) if vocab.is_file() else None}


def _bilstm(name: str, defaults: Dict[str, Any], tokenizer: Optional[WordTokenizer], kw: Dict[str, Any]) -> TextEncoder:
    args = {**defaults, **kw}
    if tokenizer is None and "vocab_size" not in args:
        raise ConfigError(f"{name}: needs tokenizer=WordTokenizer.build(train_captions) (or vocab_size)")
    if tokenizer is not None:
        args.setdefault("vocab_size", tokenizer.vocab_size)
    return _named(BiLSTMTextEncoder(tokenizer=tokenizer, **args), name)


@TEXT_ENCODERS.register("bilstm")
def bilstm(tokenizer: Optional[WordTokenizer] = None, **kw: Any) -> TextEncoder:
    """DAMSM BiLSTM, D=256, embeddings 300, dropout 0.5, 18 words (AttnGAN's CUB setting)."""
    return _bilstm("bilstm", {"dim": 256, "embed_dim": 300}, tokenizer, kw)


@TEXT_ENCODERS.register("bilstm_tiny")
def bilstm_tiny(tokenizer: Optional[WordTokenizer] = None, **kw: Any) -> TextEncoder:
    """A 16-d BiLSTM for tests."""
    return _bilstm("bilstm_tiny", {"dim": 16, "embed_dim": 8, "dropout": 0.0}, tokenizer, kw)


bilstm.uses_word_vocab = bilstm_tiny.uses_word_vocab = True  # type: ignore[attr-defined]


# --------------------------------------------------------- Hugging Face model
class HFTextEncoder(TextEncoder):
    """Any transformers encoder from a local folder (default: the packaged all-MiniLM-L6-v2).

    Word features are the last hidden states; the sentence feature is their mean over
    real tokens (sentence-transformers pooling). The mask includes special tokens
    ([CLS], [SEP]). An optional linear layer maps both to ``dim``.

    Args:
        model_dir: a local model folder or a hub id (resolved offline, see
            :func:`~imagetext.encoders.weights.resolve_hf_model`); None = all-MiniLM-L6-v2.
        dim: output size; None keeps the model's hidden size.
        max_len: sub-word tokens per caption (longer ones are truncated).
        load_weights: False builds the architecture with random weights (used on reload).
        allow_download: allow fetching a hub id that is not cached.
    """

    def __init__(
        self,
        model_dir: Optional[str] = None,
        dim: Optional[int] = None,
        max_len: int = 64,
        load_weights: bool = True,
        allow_download: bool = False,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self._record_config(model_dir=model_dir, dim=dim, max_len=max_len)
        folder = resolve_hf_model(model_dir, allow_download=allow_download)
        hf_logging.disable_progress_bar()
        self.hf_tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.hf_tokenizer.padding_side = "right"  # lengths_to_mask assumes right padding
        if load_weights:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(str(folder), local_files_only=True))
        self.model = model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) else model
        self.hf_config = model.config
        hidden = int(model.config.hidden_size)
        self.proj = nn.Linear(hidden, dim) if dim is not None and dim != hidden else None
        self.dim = dim if dim is not None else hidden
        self.max_len = max_len

    def tokenize(self, captions: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        enc = self.hf_tokenizer(
            list(captions), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        return enc["input_ids"], enc["attention_mask"].sum(1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> TextFeatures:  # type: ignore[override]
        mask = lengths_to_mask(lengths.to(tokens.device), tokens.shape[1])
        hidden = self.model(input_ids=tokens, attention_mask=mask.long()).last_hidden_state  # B x T x H
        if self.proj is not None:
            hidden = self.proj(hidden)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        sentence = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return TextFeatures(words=hidden.transpose(1, 2).contiguous(), sentence=sentence, mask=mask)

    def _save_extra(self, directory: Path) -> None:
        # Architecture + tokenizer files, so the saved folder rebuilds without the source model.
        self.hf_config.save_pretrained(str(directory / "hf"))
        self.hf_tokenizer.save_pretrained(str(directory / "hf"))

    @classmethod
    def _reload_kwargs(cls, args: Dict[str, Any], directory: Path) -> Dict[str, Any]:
        return {**args, "model_dir": str(directory / "hf"), "load_weights": False}


@TEXT_ENCODERS.register("hf")
def hf(tokenizer: Optional[WordTokenizer] = None, **kw: Any) -> TextEncoder:
    """A transformers model from a local folder (default all-MiniLM-L6-v2, 384-d); ``tokenizer`` is ignored."""
    return _named(HFTextEncoder(**kw), "hf")


# ------------------------------------------------------------ open_clip text
class OpenCLIPTextEncoder(TextEncoder):
    """The text tower of an open_clip model.

    The sentence feature is the tower's projected pooled (EOT) feature; word features
    are every token's final-layer feature through the same projection, so both are
    ``embed_dim`` (or ``dim`` after an optional linear layer). The mask covers the
    start token through the end token. Towers backed by a HF model give ``words=None``.

    Args:
        model_name: an open_clip config name (``"ViT-B-32"``); ignored if ``model_cfg`` is set.
        pretrained: None (random init), an open_clip tag (``"openai"``) or a checkpoint file.
        model_cfg: a full open_clip model config dict (tiny test models).
        dim: output size; None keeps ``embed_dim``.
        load_weights: False skips ``pretrained`` (used on reload).
        allow_download: allow fetching a tagged checkpoint that is not cached.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: Optional[str] = None,
        model_cfg: Optional[Dict[str, Any]] = None,
        dim: Optional[int] = None,
        load_weights: bool = True,
        allow_download: bool = False,
    ) -> None:
        super().__init__()
        from .weights import build_open_clip, open_clip_tokenizer

        clip, cfg = build_open_clip(model_name, model_cfg, pretrained if load_weights else None, allow_download)
        self._record_config(model_name=model_name, pretrained=pretrained, model_cfg=cfg, dim=dim)
        from open_clip.transformer import TextTransformer

        self.text = clip.text
        del clip
        # open_clip's own transformer exposes per-token features through its projection;
        # HF-backed towers do not (their tokens are not in the embedding space): words=None.
        self.has_word_features = isinstance(self.text, TextTransformer) and getattr(self.text, "cls_emb", None) is None
        self.text.output_tokens = self.has_word_features
        embed = int(cfg["embed_dim"])
        self.pad_id = int(cfg["text_cfg"].get("pad_id", 0))
        self.clip_tokenizer = open_clip_tokenizer(model_name, cfg)
        self.proj = nn.Linear(embed, dim) if dim is not None and dim != embed else None
        self.dim = dim if dim is not None else embed

    def tokenize(self, captions: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        tokens = self.clip_tokenizer(list(captions))
        return tokens, (tokens != self.pad_id).sum(1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> TextFeatures:  # type: ignore[override]
        """``tokens`` B x context_length open_clip ids (full context: the causal mask is fixed)."""
        out = self.text(tokens)
        if not self.has_word_features:
            pooled = out[0] if isinstance(out, tuple) else out
            return TextFeatures(words=None, sentence=self.proj(pooled) if self.proj is not None else pooled, mask=None)
        pooled, tok = out
        width = int(lengths.max())  # drop the all-padding tail of the 77-token context
        words = tok[:, :width]
        proj = self.text.text_projection
        if proj is not None:
            words = proj(words) if isinstance(proj, nn.Module) else words @ proj
        if self.proj is not None:
            pooled, words = self.proj(pooled), self.proj(words)
        mask = lengths_to_mask(lengths.to(tokens.device), width)
        return TextFeatures(words=words.transpose(1, 2).contiguous(), sentence=pooled, mask=mask)

    @classmethod
    def _reload_kwargs(cls, args: Dict[str, Any], directory: Path) -> Dict[str, Any]:
        return {**args, "load_weights": False}


@TEXT_ENCODERS.register("openclip_text")
def openclip_text(tokenizer: Optional[WordTokenizer] = None, **kw: Any) -> TextEncoder:
    """open_clip text tower (default ViT-B-32, random init unless ``pretrained``); ``tokenizer`` is ignored."""
    return _named(OpenCLIPTextEncoder(**kw), "openclip_text")


@TEXT_ENCODERS.register("openclip_text_tiny")
def openclip_text_tiny(tokenizer: Optional[WordTokenizer] = None, **kw: Any) -> TextEncoder:
    """A one-layer 32-wide open_clip text tower (16-d output) for tests."""
    from .weights import TINY_OPEN_CLIP_CFG

    kw.setdefault("model_cfg", TINY_OPEN_CLIP_CFG)
    return _named(OpenCLIPTextEncoder(model_name="tiny", **kw), "openclip_text_tiny")
