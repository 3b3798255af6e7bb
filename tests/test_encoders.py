"""Every registered text/image encoder: shapes, save/load round trip, real behaviour."""
import json

import pytest
import torch

from imagetext.encoders import (
    ImageEncoder,
    ImageFeatures,
    TextEncoder,
    TextFeatures,
    build_image_encoder,
    build_text_encoder,
    load_encoder,
    needs_word_vocab,
)
from imagetext.errors import ConfigError
from imagetext.registry import list_image_encoders, list_text_encoders
from imagetext.tokenizer import WordTokenizer

CAPTIONS = ["a small red bird with black wings", "this bird is yellow.", "a large white bird"]
TOKENIZER = WordTokenizer.build(CAPTIONS)

# Real-sized open_clip towers (ViT-B-32, ~150M parameters) take many seconds to build on CPU.
SLOW = {"openclip_text", "openclip_vision"}
# Inception-v3 needs >= 75 px: tiny test images are resized to 75 px instead of 299.
IMAGE_KWARGS = {"inception_v3": {"resize_to": 75, "dim": 16}}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def _images(size=32, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


def _text_encoder(name, **kw):
    torch.manual_seed(0)
    return build_text_encoder(name, tokenizer=TOKENIZER, **kw).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two intra-op threads on a shared 2-core machine are several times slower than one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def text_encoder():
    """Build each text encoder once per module (eval mode, offline HF hub)."""
    cache = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")

        def get(name):
            if name not in cache:
                cache[name] = _text_encoder(name)
            return cache[name]

        yield get


@pytest.fixture(scope="module")
def image_encoder():
    """Build each image encoder (with its test kwargs) once per module, in eval mode."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_image_encoder(name, **IMAGE_KWARGS.get(name, {})).eval()
        return cache[name]

    return get


def test_registries_list_the_documented_encoders():
    assert {"bilstm", "bilstm_tiny", "hf", "openclip_text", "openclip_text_tiny"} <= set(list_text_encoders())
    assert {"damsm_cnn", "damsm_cnn_tiny", "inception_v3", "openclip_vision", "openclip_vision_tiny"} <= set(
        list_image_encoders()
    )
    assert needs_word_vocab("bilstm") and not needs_word_vocab("hf")


@pytest.mark.parametrize("name", _params(list_text_encoders()))
def test_text_encoder_shapes_and_round_trip(name, tmp_path, text_encoder):
    enc = text_encoder(name)
    assert isinstance(enc, TextEncoder) and enc.registered_name == name
    with torch.no_grad():
        feats = enc.encode_text(CAPTIONS)
    assert isinstance(feats, TextFeatures)
    b, d = len(CAPTIONS), enc.dim
    assert feats.sentence.shape == (b, d)
    assert feats.words.shape[:2] == (b, d)
    t = feats.words.shape[2]
    _, lengths = enc.tokenize(CAPTIONS)
    assert feats.mask.dtype == torch.bool and feats.mask.shape == (b, t)
    assert feats.mask.sum(1).tolist() == lengths.tolist() and t == int(lengths.max())
    assert torch.isfinite(feats.words).all() and torch.isfinite(feats.sentence).all()
    # different captions give different sentence features
    assert not torch.allclose(feats.sentence[0], feats.sentence[1])

    enc.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["name"] == name and meta["kind"] == "text" and (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "vocab.json").is_file() == needs_word_vocab(name)
    back = load_encoder(tmp_path)
    assert type(back) is type(enc) and back.registered_name == name and not back.training
    with torch.no_grad():
        again = back.encode_text(CAPTIONS)
    assert torch.equal(again.sentence, feats.sentence) and torch.equal(again.words, feats.words)
    assert torch.equal(again.mask, feats.mask)


@pytest.mark.parametrize("name", _params(list_text_encoders()))
def test_text_features_do_not_depend_on_batch_padding(name, text_encoder):
    """A caption's features are the same alone or padded beside a longer caption."""
    enc = text_encoder(name)
    short, long_ = "a red bird", "a small red bird with black wings and a long yellow beak"
    with torch.no_grad():
        alone = enc.encode_text([short])
        padded = enc.encode_text([short, long_])
    n = int(alone.mask.sum())
    assert int(padded.mask[0].sum()) == n and padded.words.shape[2] > n
    torch.testing.assert_close(padded.sentence[0], alone.sentence[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(padded.words[0, :, :n], alone.words[0, :, :n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", _params(list_image_encoders()))
def test_image_encoder_shapes_and_round_trip(name, tmp_path, image_encoder):
    enc = image_encoder(name)
    assert isinstance(enc, ImageEncoder) and enc.registered_name == name
    x = _images(16 if "tiny" in name else 32)
    with torch.no_grad():
        feats = enc(x)
    assert isinstance(feats, ImageFeatures)
    assert feats.global_.shape == (2, enc.dim) and torch.isfinite(feats.global_).all()
    if feats.regions is not None:
        assert feats.regions.shape[:2] == (2, enc.dim) and feats.regions.shape[2] >= 1
    assert not torch.allclose(feats.global_[0], feats.global_[1])

    enc.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["kind"] == "image"
    back = load_encoder(tmp_path)
    assert type(back) is type(enc) and back.registered_name == name and not back.training
    with torch.no_grad():
        again = back(x)
    assert torch.equal(again.global_, feats.global_)
    assert (again.regions is None) == (feats.regions is None)
    if feats.regions is not None:
        assert torch.equal(again.regions, feats.regions)


def test_region_grids(image_encoder):
    with torch.no_grad():
        assert image_encoder("damsm_cnn_tiny")(_images(16)).regions.shape == (2, 16, 2, 2)
        assert image_encoder("damsm_cnn_tiny")(_images(32)).regions.shape == (2, 16, 4, 4)
        assert image_encoder("damsm_cnn")(_images(16)).regions.shape == (2, 256, 1, 1)
        assert image_encoder("damsm_cnn")(_images(64)).regions.shape == (2, 256, 4, 4)
        # the ViT resizes any input to its 16 px and returns its 4 x 4 patch grid
        assert image_encoder("openclip_vision_tiny")(_images(24)).regions.shape == (2, 16, 4, 4)


def test_inception_v3_loads_a_torchvision_file_and_matches_torchvision(tmp_path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    ref = inception_v3(weights=None, aux_logits=True, init_weights=False).eval()  # the official layout
    ckpt = tmp_path / "inception.pth"
    torch.save(ref.state_dict(), ckpt)
    enc = build_image_encoder("inception_v3", weights=str(ckpt), resize_to=None).eval()
    ref.fc = torch.nn.Identity()
    x = _images(75)
    with torch.no_grad():
        feats = enc(x)
        torch.testing.assert_close(feats.global_, ref(x))
    assert feats.regions is None and enc.dim == 2048  # dim=None: raw pool features
    with pytest.raises(ValueError, match="75"):
        enc(_images(32))


def test_damsm_small_trunk_trains_end_to_end():
    small = build_image_encoder("damsm_cnn_tiny").train()
    f = small(_images(16))
    (f.global_.sum() + f.regions.sum()).backward()
    assert all(p.grad is not None for p in small.parameters())


def test_damsm_inception_trunk_17x17_at_299_and_frozen():
    """AttnGAN's setting: frozen Inception trunk, regions = Mixed_6e (17 x 17 at 299 px)."""
    enc = build_image_encoder("damsm_cnn", trunk="inception", resize_to=299, dim=8).train()
    assert not enc.trunk.training  # a frozen trunk keeps its BatchNorm statistics fixed
    f = enc(_images(32))
    assert f.regions.shape == (2, 8, 17, 17) and f.global_.shape == (2, 8)
    (f.global_.sum() + f.regions.sum()).backward()
    assert all(p.grad is None for p in enc.trunk.parameters())
    assert enc.global_proj.weight.grad is not None and enc.region_proj.weight.grad is not None


def test_bilstm_gradients_and_argument_errors():
    enc = build_text_encoder("bilstm_tiny", tokenizer=TOKENIZER).train()
    feats = enc.encode_text(CAPTIONS)
    (feats.sentence.sum() + feats.words.sum()).backward()
    assert enc.embedding.weight.grad is not None and enc.embedding.weight.grad[0].abs().sum() == 0  # pad row
    with pytest.raises(ConfigError, match="tokenizer"):
        build_text_encoder("bilstm")
    with pytest.raises(ConfigError, match="even"):
        build_text_encoder("bilstm", tokenizer=TOKENIZER, dim=15)
    with pytest.raises(ConfigError, match="small"):
        build_image_encoder("damsm_cnn", weights="imagenet")


def test_bilstm_accepts_fixed_width_tokens_and_rejects_empty_rows(text_encoder):
    """Data loaders pad to max_words: extra padding changes nothing but T."""
    enc = text_encoder("bilstm_tiny")
    tokens, lengths = TOKENIZER.encode_batch(CAPTIONS)
    wide = torch.zeros(len(CAPTIONS), 20, dtype=torch.long)
    wide[:, : tokens.shape[1]] = tokens
    with torch.no_grad():
        f, g = enc(wide, lengths), enc(tokens, lengths)
    assert f.words.shape[2] == 20 and f.mask.sum(1).tolist() == lengths.tolist()
    torch.testing.assert_close(f.sentence, g.sentence)
    assert f.words[:, :, tokens.shape[1]:].abs().sum() == 0  # padded steps have zero output
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        enc(tokens, torch.tensor([2, 0, 1]))


def test_bilstm_sentence_is_last_hidden_of_both_directions(text_encoder):
    enc = text_encoder("bilstm_tiny")
    with torch.no_grad():
        f = enc.encode_text(["a small red bird"])
    half = enc.dim // 2
    # forward direction ends at the last word, backward direction at the first
    torch.testing.assert_close(f.sentence[0, :half], f.words[0, :half, -1])
    torch.testing.assert_close(f.sentence[0, half:], f.words[0, half:, 0])


def test_projection_dim_applies_to_words_and_sentence(tmp_path):
    enc = _text_encoder("openclip_text_tiny", dim=12)
    with torch.no_grad():
        f = enc.encode_text(CAPTIONS)
    assert enc.dim == 12 and f.sentence.shape == (3, 12) and f.words.shape[1] == 12
    img = build_image_encoder("openclip_vision_tiny", dim=12).eval()
    with torch.no_grad():
        g = img(_images(16))
    assert g.global_.shape == (2, 12) and g.regions.shape == (2, 12, 4, 4)


def test_from_pretrained_checks_the_class(tmp_path):
    build_image_encoder("damsm_cnn_tiny").save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="not a TextEncoder"):
        TextEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="format"):
        load_encoder(tmp_path)


def test_openclip_checkpoint_file_matches_open_clip(tmp_path):
    """A CLIP-layout checkpoint loads into both towers and reproduces open_clip's own outputs."""
    import open_clip
    from open_clip.model import CLIP

    from imagetext.encoders.weights import TINY_OPEN_CLIP_CFG

    torch.manual_seed(1)
    clip = CLIP(**TINY_OPEN_CLIP_CFG).eval()
    ckpt = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), ckpt)
    text = build_text_encoder("openclip_text_tiny", pretrained=str(ckpt)).eval()
    vision = build_image_encoder("openclip_vision_tiny", pretrained=str(ckpt)).eval()
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=24)(CAPTIONS)
    x = _images(16)
    with torch.no_grad():
        torch.testing.assert_close(text.encode_text(CAPTIONS).sentence, clip.encode_text(tokens))
        mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(vision(x).global_, clip.encode_image(((x + 1) / 2 - mean) / std))


def test_hf_minilm_offline_paraphrases_are_closer(text_encoder):
    enc = text_encoder("hf")
    assert enc.dim == 384
    with torch.no_grad():
        s = enc.encode_text(
            [
                "A small bird with red wings is sitting on a branch.",
                "On a branch sits a little bird that has red wings.",
                "The stock market fell sharply on Tuesday.",
            ]
        ).sentence
    s = torch.nn.functional.normalize(s, dim=1)
    para, unrelated = float(s[0] @ s[1]), float(s[0] @ s[2])
    assert para > 0.7 and unrelated < 0.3, (para, unrelated)
