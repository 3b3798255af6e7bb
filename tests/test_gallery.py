"""matching.gallery: build/load round trip, search against brute force, folder indexing and its confinement."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def W(tmp_path_factory, tiny_birds_matcher) -> Path:
    import shutil

    w = tmp_path_factory.mktemp("gallery")
    shutil.copytree(tiny_birds_matcher, w / "model")
    return w


@pytest.fixture(scope="module")
def built(W):
    from imagetext.data.synthetic import load_synthetic
    from matching.gallery import Gallery

    split = load_synthetic("birds", split="test", n=12, seed=0, size=32, n_train=48, n_test=24)
    images = [s.load_image() for s in split.samples]
    captions = [(c, i) for i, s in enumerate(split.samples) for c in s.captions[:2]]
    Gallery.build(W / "model", images, W / "g", captions=captions, image_size=32, info={"world": "birds"})
    return images, captions


def test_round_trip_and_brute_force(W, built):
    from matching.gallery import Gallery, embed_pil_images, embed_texts

    images, captions = built
    g = Gallery.load(W / "g")
    assert len(g) == 12 and len(g.captions) == len(captions) and g.info["world"] == "birds"
    hits = g.search_text("a small red bird", k=5)
    q = embed_texts(g.model, ["a small red bird"])[0]
    emb = embed_pil_images(g.model, [g.open_image(f"thumbs/{i:05d}.png") for i in range(12)], 32)
    order = np.argsort(-(emb @ q), kind="stable")[:5]
    assert [h[0] for h in hits] == [f"thumbs/{i:05d}.png" for i in order]
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    # an image finds itself first, and image -> caption returns caption texts
    assert g.similar_images(images[3], k=1)[0][0] == "thumbs/00003.png"
    caps = g.search_image(images[3], k=4)
    assert len(caps) == 4 and all(c in {t for t, _ in captions} for c, _ in caps)
    assert len(g.search_text("bird", k=1000)) == 12  # k clamped to the gallery


def test_bad_queries_and_ids(W, built):
    from matching.gallery import Gallery, GalleryError

    g = Gallery.load(W / "g")
    with pytest.raises(GalleryError, match="empty"):
        g.search_text("  ")
    with pytest.raises(GalleryError, match="not inside"):
        g.image_path("../model/matcher.json")
    with pytest.raises(GalleryError, match="not empty"):
        Gallery.build(W / "model", built[0], W / "g")


def test_altered_index_is_refused(W, built, tmp_path):
    import shutil

    from imagetext.errors import UserError
    from matching.gallery import Gallery

    shutil.copytree(W / "g", tmp_path / "g")
    f = tmp_path / "g" / "images" / "index.faiss"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        Gallery.load(tmp_path / "g")


def test_query_image_limits(tmp_path):
    from matching.gallery import GalleryError, load_query_image

    (tmp_path / "a.png").write_text("text")
    with pytest.raises(GalleryError, match="not an image"):
        load_query_image(tmp_path / "a.png")
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(GalleryError, match="too large"):
        load_query_image(tmp_path / "big.png", max_pixels=10_000)
    assert load_query_image(tmp_path / "big.png").size == (300, 300)


def test_from_folder_reads_only_inside(W, built, tmp_path):
    from matching.gallery import Gallery, GalleryError

    g0 = Gallery.load(W / "g")
    pics = tmp_path / "pics"
    (pics / "sub").mkdir(parents=True)
    for i, im in enumerate(built[0][:5]):
        im.save(pics / ("sub" if i % 2 else ".") / f"{i}.png")
    (pics / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    outside = tmp_path / "outside.png"
    built[0][6].save(outside)
    os.symlink(outside, pics / "escape.png")
    progress = []
    g = Gallery.from_folder(pics, g0.model, image_size=32, progress=lambda d, n: progress.append((d, n)))
    assert sorted(g.images.ids) == sorted(["0.png", "sub/1.png", "2.png", "sub/3.png", "4.png"])
    assert any("1 link(s) pointing outside" in n for n in g.notes)
    assert any("1 unreadable" in n and "broken.jpg" in n for n in g.notes)
    assert progress[-1][0] == progress[-1][1]
    assert g.search_text("a bird", k=2)[0][0] in g.images.ids
    with pytest.raises(GalleryError, match="not inside"):
        g.image_path("../outside.png")
    with pytest.raises(GalleryError, match="not a folder"):
        Gallery.from_folder(tmp_path / "missing", g0.model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GalleryError, match="no image files"):
        Gallery.from_folder(tmp_path / "empty", g0.model)
