"""The committed `synth` evaluator checkpoints: integrity and real behaviour on held-out images."""
import json

import numpy as np
import pytest
import torch

from imagetext.data.synthetic import load_synthetic
from imagetext.encoders.weights import sha256_file
from imagetext.metrics.engine import extract
from imagetext.metrics.evaluator_train import evaluate_heads
from imagetext.metrics.extractors import ASSETS
from imagetext.metrics.faithfulness import faithfulness
from imagetext.registry import FEATURE_EXTRACTORS

WORLDS = [w for w in ("birds", "scenes") if (ASSETS / f"synth_{w}" / "model.safetensors").is_file()]


def _images(world, n, split="test"):
    s = load_synthetic(world, split, n=n, size=64, n_test=n)
    x = torch.stack([torch.from_numpy(np.asarray(x.load_image()).copy()).permute(2, 0, 1) for x in s.samples])
    return s, x


def test_birds_checkpoint_is_committed():
    assert "birds" in WORLDS


@pytest.mark.parametrize("world", WORLDS)
def test_checkpoint_matches_recorded_sha256(world):
    d = ASSETS / f"synth_{world}"
    info = json.loads((d / "metrics.json").read_text())
    assert sha256_file(d / "model.safetensors") == info["sha256"]
    ext = FEATURE_EXTRACTORS.build("synth", world=world)
    assert ext.provenance.weights_sha256 == info["sha256"]


def test_birds_species_accuracy_on_unseen_images():
    # Images 2000.. of the test split were not used for the recorded held-out number either.
    s = load_synthetic("birds", "test", n=2160, size=64, n_test=2160)
    samples = s.samples[2000:]
    x = torch.stack([torch.from_numpy(np.asarray(x.load_image()).copy()).permute(2, 0, 1) for x in samples])
    ext = FEATURE_EXTRACTORS.build("synth", world="birds")
    acc = evaluate_heads(ext.net, x, [x.attributes for x in samples])
    assert acc["species_acc"] >= 0.9 and acc["body_colour_acc"] >= 0.95


@pytest.mark.parametrize("world", WORLDS)
def test_real_images_are_faithful_to_their_own_captions(world):
    """The faithfulness ceiling: real images with their own captions are judged right almost always,
    and the same images with another image's captions are not."""
    s, x = _images(world, 96)
    ext = FEATURE_EXTRACTORS.build("synth", world=world)
    r = extract(ext, x, batch_size=48, keep_heads=True, progress=False)
    own = faithfulness(r.heads, [a.caption_attributes[0] for a in s.samples], ext.extra["config"])
    shuffled = faithfulness(r.heads, [a.caption_attributes[0] for a in s.samples[1:] + s.samples[:1]], ext.extra["config"])
    # scenes is judged less reliably (colour head ~69% held-out, see metrics.json): a lower ceiling
    assert own["overall"] >= {"birds": 0.9, "scenes": 0.8}[world]
    assert shuffled["overall"] < own["overall"] - 0.2
