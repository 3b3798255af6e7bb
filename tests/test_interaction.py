"""Cross-attention (SCAN-style) interaction matcher and retrieve-then-re-rank (issue 10, METHODS.md section 4)."""
import pytest
import torch
import torch.nn.functional as F

import matching.models  # noqa: F401  (registers vse_gpo_tiny)
from imagetext.errors import ConfigError, MetricInputError
from imagetext.metrics.retrieval import retrieval_recall
from imagetext.registry import MATCHERS, load_saved_model
from imagetext.tokenizer import WordTokenizer
from matching.interaction import (CrossAttentionMatcher, InteractionInputError, full_ranking, rerank,
                                  reranked_ranks, reranked_recall)
from matching.losses import vse_loss

CAPTIONS = ["a small red bird with black wings", "this bird is yellow", "a large white bird on a branch",
            "a blue bird", "green wings and a short beak", "the bird is brown and white",
            "black bird with a long tail", "a tiny grey bird sitting"]
TOKENIZER = WordTokenizer.build(CAPTIONS)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return MATCHERS.build("scan_tiny", tokenizer=TOKENIZER, **kw).eval()


def _images(n, seed=1, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("pooling", ["lse", "mean"])
def test_score_shape_and_padding_invariance(pooling):
    model = _model(pooling=pooling)
    images = _images(3)
    tokens, lengths = model.tokenize(CAPTIONS[:4])
    with torch.no_grad():
        s = model.score(images, tokens, lengths)
        assert s.shape == (3, 4) and torch.isfinite(s).all()
        # junk word ids in the padding, and a wider padding, change nothing
        wide = torch.randint(1, len(TOKENIZER), (4, tokens.shape[1] + 3))
        wide[:, :tokens.shape[1]] = torch.where(torch.arange(tokens.shape[1])[None] < lengths[:, None], tokens,
                                                wide[:, :tokens.shape[1]])
        assert torch.allclose(model.score(images, wide, lengths), s, atol=1e-5)
        # aligned pairs agree with the diagonal of the all-pairs matrix
        assert torch.allclose(model.score_pairs(images, tokens[:3], lengths[:3]), s.diagonal(), atol=1e-5)
        # feature level: NaN / huge junk in padded word vectors changes nothing either
        regions = model.encode_images(images)
        words, mask = model.encode_tokens(tokens, lengths)
        junk = words.clone()
        junk[~mask] = float("nan")
        junk[~mask, 0] = 1e6
        assert torch.allclose(model.score_features(regions, junk, mask), s, atol=1e-5)


def test_attention_sums_to_one_and_score_matches_explicit_formula():
    model = _model(lambda_softmax=9.0, lambda_lse=6.0)
    regions, words = _unit(3, 5, 16, seed=1), _unit(4, 6, 16, seed=2)
    lengths = torch.tensor([6, 3, 1, 4])
    mask = torch.arange(6)[None] < lengths[:, None]
    alpha = model.attention(regions, words)
    assert alpha.shape == (3, 4, 6, 5) and (alpha >= 0).all()
    assert torch.allclose(alpha.sum(-1), torch.ones(3, 4, 6), atol=1e-6)
    # the Gram-matrix form equals a_i = Σ_j α_ij r_j, R_i = cos(w_i, a_i), (1/λ2) log Σ_real exp(λ2 R_i)
    attended = torch.einsum("itjk,ike->itje", alpha, regions)
    rel = F.cosine_similarity(words[None], attended, dim=-1)
    expect = torch.logsumexp(6.0 * rel.masked_fill(~mask[None], float("-inf")), dim=-1) / 6.0
    got = model.score_features(regions, words, mask)
    assert torch.allclose(got, expect, atol=1e-5)
    # chunking over small blocks gives the same matrix
    model.max_elements = 7
    assert torch.allclose(model.score_features(regions, words, mask), got, atol=1e-6)


def test_words_equal_to_regions_score_higher():
    model = _model()
    regions = _unit(2, 5, 16, seed=3)
    words = torch.zeros(2, 3, 16)
    words[0] = regions[0, [0, 2, 3]]
    words[1, :2] = regions[1, [1, 4]]
    mask = torch.tensor([[True, True, True], [True, True, False]])
    s = model.score_features(regions, words, mask)
    assert s[0, 0] > s[1, 0] and s[1, 1] > s[0, 1]  # each caption prefers its own image
    assert s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]  # each image prefers its own caption


def test_vse_training_reduces_loss():
    model = _model(seed=4).train()
    images = _images(4, seed=5)
    tokens, lengths = model.tokenize(CAPTIONS[:4])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = vse_loss(model(images, tokens, lengths), margin=0.2, max_violation=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_save_load_round_trip(tmp_path):
    model = _model(affine=True)
    with torch.no_grad():
        model.score_scale.fill_(2.0)
        model.score_bias.fill_(-0.3)
    images = _images(3)
    tokens, lengths = model.tokenize(CAPTIONS[:5])
    with torch.no_grad():
        before = model.score(images, tokens, lengths)
    model.save_pretrained(tmp_path / "m")
    for loaded in (CrossAttentionMatcher.from_pretrained(tmp_path / "m"), load_saved_model(tmp_path / "m")):
        assert isinstance(loaded, CrossAttentionMatcher) and not loaded.training and loaded.name == "scan_tiny"
        assert loaded.args == model.args
        with torch.no_grad():
            assert torch.equal(loaded.score(images, tokens, lengths), before)
    # an embedding matcher's folder is refused with a clear error
    MATCHERS.build("vse_gpo_tiny", tokenizer=TOKENIZER).save_pretrained(tmp_path / "emb")
    with pytest.raises(ConfigError, match="holds format 'matching.embedding/1', not 'matching.interaction/1'"):
        CrossAttentionMatcher.from_pretrained(tmp_path / "emb")


def _pair():
    torch.manual_seed(6)
    emb = MATCHERS.build("vse_gpo_tiny", tokenizer=TOKENIZER).eval()
    return emb, _model(seed=7)


def test_rerank_whole_gallery_equals_interaction_ranking():
    emb, inter = _pair()
    images, c2i = _images(4, seed=8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    res = rerank(emb, inter, images, CAPTIONS, k=100, batch_size=3)  # k cut to each gallery
    assert (res["k_t2i"], res["k_i2t"]) == (4, 8)
    with torch.no_grad():
        tokens, lengths = inter.tokenize(CAPTIONS)
        full = inter.score(images, tokens, lengths)  # (4, 8)
    assert torch.equal(res["t2i"], torch.argsort(full.T, dim=1, descending=True))
    assert torch.equal(res["i2t"], torch.argsort(full, dim=1, descending=True))
    assert torch.allclose(res["t2i_scores"], full.T.gather(1, res["t2i"]), atol=1e-5)
    got, want = reranked_recall(res, c2i), retrieval_recall(full, c2i)
    for key in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "t2i_medr", "i2t_meanr", "t2i_meanr", "rsum"):
        assert got[key] == pytest.approx(want[key]), key


def test_rerank_only_permutes_the_shortlist():
    emb, inter = _pair()
    images, c2i = _images(6, seed=9), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    res = rerank(emb, inter, images, CAPTIONS, k=2)
    for direction, sims in (("t2i", res["sims"].T), ("i2t", res["sims"])):
        order = torch.sort(sims, dim=1, descending=True, stable=True)[1]
        final = full_ranking(res, direction)
        assert torch.equal(final[:, 2:], order[:, 2:])  # beyond the shortlist: the embedding order
        assert torch.equal(final[:, :2].sort(1)[0], order[:, :2].sort(1)[0])  # same shortlist members
        assert torch.equal(final.sort(1)[0], torch.arange(final.shape[1]).expand_as(final))  # a permutation
    # ranks used for recall are positions in those final lists
    i2t, t2i = reranked_ranks(res, c2i)
    final_t2i, final_i2t = full_ranking(res, "t2i"), full_ranking(res, "i2t")
    for c in range(len(CAPTIONS)):
        assert t2i[c] == int((final_t2i[c] == c2i[c]).nonzero()) + 1
    for i in range(6):
        pos = [int((final_i2t[i] == c).nonzero()) + 1 for c in range(len(CAPTIONS)) if c2i[c] == i]
        assert i2t[i] == min(pos)
    assert 0 <= reranked_recall(res, c2i)["t2i_r1"] <= 100


def test_bad_input():
    emb, inter = _pair()
    images = _images(3)
    for k in (0, -1, 1.5):
        with pytest.raises(InteractionInputError, match="k must be an integer >= 1"):
            rerank(emb, inter, images, CAPTIONS[:3], k=k)
    with pytest.raises(InteractionInputError, match="list of strings"):
        rerank(emb, inter, images, "one caption", k=1)
    tokens, lengths = inter.tokenize(CAPTIONS[:3])
    with pytest.raises(InteractionInputError, match="disagree"):
        inter.score(images, tokens, lengths[:2])
    with pytest.raises(InteractionInputError, match="outside 1"):
        inter.score(images, tokens, torch.tensor([1, 0, 2]))
    with pytest.raises(InteractionInputError, match="outside 1"):
        inter.score(images, tokens, lengths + tokens.shape[1])
    with pytest.raises(InteractionInputError, match="as many images"):
        inter.score_pairs(images[:2], tokens, lengths)
    res = rerank(emb, inter, images, CAPTIONS[:3], k=2)
    with pytest.raises(MetricInputError, match="3 captions"):
        reranked_recall(res, [0, 1])
    with pytest.raises(MetricInputError, match="no caption"):
        reranked_recall(res, [0, 0, 1])
    with pytest.raises(ConfigError, match="pooling"):
        _model(pooling="max")
