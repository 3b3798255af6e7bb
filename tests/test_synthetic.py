"""The synthetic worlds: determinism, sizes, species table, truthful captions, splits, on-disk format."""
from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from PIL import Image

from imagetext.errors import ConfigError
from imagetext.data.synthetic import (
    BIRD_ATTRIBUTES,
    BIRD_COLOUR_WORDS,
    BIRD_MENTION_VALUES,
    RELATIONS,
    SCENE_CATEGORIES,
    SCENE_COLOURS,
    SCENE_NOUNS,
    SCENE_SIZES,
    SPECIES,
    SPECIES_NAMES,
    class_disjoint_split,
    load_synthetic,
    write_world,
)

WORLDS = ["birds", "scenes"]


def pixels(sample) -> np.ndarray:
    return np.asarray(sample.load_image())


def words(text: str) -> str:
    """Caption as space-padded words, so ' red ' matches whole words only."""
    return " " + " ".join(re.findall(r"[a-z\-]+", text.lower())) + " "


# ----------------------------------------------------------------------------- determinism and sizes


@pytest.mark.parametrize("world", WORLDS)
def test_same_seed_same_data_and_prefix_stable(world):
    a = load_synthetic(world, "train", n=6, seed=3, size=32)
    b = load_synthetic(world, "train", n=3, seed=3, size=32)  # a prefix must not depend on n
    for sa, sb in zip(a.samples, b.samples):
        assert sa.captions == sb.captions
        assert sa.attributes == sb.attributes
        assert sa.caption_attributes == sb.caption_attributes
        assert np.array_equal(pixels(sa), pixels(sb))
    # rendering twice gives the same pixels (no hidden global random state)
    assert np.array_equal(pixels(a.samples[0]), pixels(a.samples[0]))


@pytest.mark.parametrize("world", WORLDS)
def test_different_seeds_differ(world):
    a = load_synthetic(world, "train", n=4, seed=0, size=32)
    b = load_synthetic(world, "train", n=4, seed=1, size=32)
    assert [s.captions for s in a.samples] != [s.captions for s in b.samples]
    assert not np.array_equal(pixels(a.samples[0]), pixels(b.samples[0]))


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("size", [32, 256])
def test_sizes(world, size):
    img = load_synthetic(world, "test", n=1, size=size).samples[0].load_image()
    assert img.size == (size, size) and img.mode == "RGB"
    arr = np.asarray(img)
    assert arr.std() > 5  # not a blank canvas


@pytest.mark.parametrize("bad", [16, 31, 257, 64.0, "64"])
def test_bad_size_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="size"):
        load_synthetic("birds", n=1, size=bad)


def test_bad_world_and_split_name_the_value():
    with pytest.raises(ConfigError, match="'trees'"):
        load_synthetic("trees")
    with pytest.raises(ConfigError, match="'validation'"):
        load_synthetic("birds", split="validation")


# ----------------------------------------------------------------------------- species table


def test_species_table_is_fine_grained():
    assert len(SPECIES) >= 50 and list(SPECIES) == SPECIES_NAMES
    rows = [tuple(SPECIES[n][k] for k in BIRD_ATTRIBUTES) for n in SPECIES_NAMES]
    for name, row in zip(SPECIES_NAMES, rows):
        assert len(row) >= 4
        for key, value in zip(BIRD_ATTRIBUTES, row):
            assert value in BIRD_ATTRIBUTES[key], (name, key, value)
    assert len(set(rows)) == len(rows), "two species have the same attributes"
    diffs = [sum(a != b for a, b in zip(r, s)) for r, s in itertools.combinations(rows, 2)]
    assert min(diffs) >= 1
    assert sum(d == 1 for d in diffs) >= 30, "species should come in confusable clusters"
    for i, r in enumerate(rows):  # every species shares some attribute value with another one
        assert any(a == b for j, s in enumerate(rows) if j != i for a, b in zip(r, s))
    for key, values in BIRD_ATTRIBUTES.items():  # the whole vocabulary is used
        assert {SPECIES[n][key] for n in SPECIES_NAMES} == set(values), key


# ----------------------------------------------------------------------------- captions tell the truth

_BIRD_KEYWORDS = {
    "body_shape": {"round": ["round", "plump", "chubby"], "slender": ["slender", "slim"],
                   "long-tailed": ["long"], "fan-tailed": ["fan"]},
    "pattern": {"striped": ["stripe"], "spotted": ["spot"], "barred": ["bar"],
                "plain": ["plain", "unmarked", "without markings", "no markings", "solid"]},
    "accent": {"red cap": ["red"], "black mask": ["mask", "black band"], "white eyebrow": ["white"],
               "yellow beak": ["beak", "bill"], "crest": ["crest"]},
    "pose": {"perched": ["perched", "sitting", "sits", "resting"], "flying": ["flight", "flying", "spread"]},
    "facing": {"left": [" left "], "right": [" right "]},
}


_ONLY_IF_MENTIONED = {
    "pattern": r"stripe|spot|bars? |barred|unmarked|markings",
    "facing": r" (left|right) ",
    "pose": r" (perched|flying|flight|sitting|sits|resting) ",
    "background_colour": r" (background|backdrop) ",
}


def test_bird_captions_mention_only_true_attributes():
    split = load_synthetic("birds", "train", n=20, seed=5, size=32)
    colour_word = {w: c for c, ws in BIRD_COLOUR_WORDS.items() for w in ws}
    for s in split.samples:
        gt = s.attributes
        assert len(s.captions) == 10 and len(s.caption_attributes) == 10
        assert s.labels == (SPECIES_NAMES.index(gt["species"]),)
        assert all(gt[k] == v for k, v in SPECIES[gt["species"]].items())
        for cap, mentioned in zip(s.captions, s.caption_attributes):
            assert mentioned, cap
            text = words(cap)
            for key, value in mentioned.items():
                assert value in BIRD_MENTION_VALUES[key], (cap, key)  # the evaluator's vocabulary
                assert gt[key] == value, (cap, key)
                if key in ("body_colour", "wing_colour"):
                    assert any(f" {w} " in text for w in BIRD_COLOUR_WORDS[value]), (cap, key)
                elif key == "background_colour":
                    assert f" {value} background " in text or f" is {value} " in text, cap
                else:
                    assert any(k in text for k in _BIRD_KEYWORDS[key][value]), (cap, key, value)
            # every colour named is the colour of a mentioned attribute
            allowed = {mentioned.get("body_colour"), mentioned.get("wing_colour")}
            allowed |= {w for w in mentioned.get("accent", "").split() if w in colour_word}
            allowed |= {w for w in mentioned.get("background_colour", "").split() if w in colour_word}
            named = {colour_word[w] for w in text.split() if w in colour_word}
            assert named <= allowed, (cap, named, allowed)
            for key, pattern in _ONLY_IF_MENTIONED.items():
                if key not in mentioned:
                    assert not re.search(pattern, text), (cap, key)


def test_scene_ground_truth_and_labels():
    split = load_synthetic("scenes", "train", n=20, seed=2, size=32)
    assert split.multi_label and split.class_names == SCENE_CATEGORIES and len(SCENE_CATEGORIES) >= 20
    for s in split.samples:
        objs = s.attributes["objects"]
        assert 1 <= len(objs) <= 4
        cats = [o["category"] for o in objs]
        assert len(set(cats)) == len(cats)
        assert s.labels == tuple(sorted(SCENE_CATEGORIES.index(c) for c in cats))
        for o in objs:
            assert o["colour"] in SCENE_COLOURS and o["size"] in SCENE_SIZES
        for r in s.attributes["relations"]:
            a, b = objs[r["subject"]], objs[r["object"]]
            assert r["relation"] in RELATIONS
            holds = {"left of": a["x"] < b["x"], "right of": a["x"] > b["x"],
                     "above": a["y"] < b["y"], "below": a["y"] > b["y"]}[r["relation"]]
            assert holds, r


def test_scene_captions_mention_only_true_objects_and_relations():
    split = load_synthetic("scenes", "test", n=20, seed=4, size=32)
    n_relations = 0
    for s in split.samples:
        gt = {o["category"]: (i, o) for i, o in enumerate(s.attributes["objects"])}
        assert len(s.captions) == 5 and len(s.caption_attributes) == 5
        for cap, mentioned in zip(s.captions, s.caption_attributes):
            text = words(cap)
            assert mentioned["objects"], cap
            for m in mentioned["objects"]:
                i, o = gt[m["category"]]  # KeyError = a category that is not in the image
                for k in ("colour", "size"):
                    if k in m:
                        assert m[k] == o[k], (cap, m)
                if "colour" in m:
                    assert f" {m['colour']} " in text
            named = {c for c, nouns in SCENE_NOUNS.items() if any(f" {n} " in text for n in nouns)}
            assert named == {m["category"] for m in mentioned["objects"]}, cap
            colours = {c for c in SCENE_COLOURS if f" {c} " in text}
            assert colours <= {m.get("colour") for m in mentioned["objects"]}, cap
            for r in mentioned["relations"]:
                n_relations += 1
                si = gt[mentioned["objects"][r["subject"]]["category"]][0]
                oi = gt[mentioned["objects"][r["object"]]["category"]][0]
                assert {"subject": si, "relation": r["relation"], "object": oi} in s.attributes["relations"], cap
    assert n_relations > 0, "some captions should state a relation"


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("world", WORLDS)
def test_train_and_test_differ(world):
    tr = load_synthetic(world, "train", n=10, size=32)
    te = load_synthetic(world, "test", n=10, size=32)
    assert not {s.attributes["image_seed"] for s in tr.samples} & {s.attributes["image_seed"] for s in te.samples}
    assert not np.array_equal(pixels(tr.samples[0]), pixels(te.samples[0]))
    assert len(load_synthetic(world, "train", n_train=7, size=32)) == 7
    assert len(load_synthetic(world, "test", n_test=5, size=32)) == 5


def test_class_disjoint_split():
    train_ids, test_ids = class_disjoint_split()
    assert not set(train_ids) & set(test_ids)
    assert sorted(train_ids + test_ids) == list(range(len(SPECIES_NAMES)))
    assert len(test_ids) == len(SPECIES_NAMES) // 4
    tr = load_synthetic("birds", "train", n=20, size=32, class_disjoint=True)
    te = load_synthetic("birds", "test", n=20, size=32, class_disjoint=True)
    assert {s.labels[0] for s in tr.samples} <= set(train_ids)
    assert {s.labels[0] for s in te.samples} <= set(test_ids)
    assert tr.report.classes == len(train_ids) and te.report.classes == len(test_ids)
    with pytest.raises(ConfigError, match="class_disjoint"):
        load_synthetic("scenes", n=1, class_disjoint=True)


@pytest.mark.parametrize("world,caps", [("birds", 10), ("scenes", 5)])
def test_report_counts(world, caps):
    split = load_synthetic(world, "train", n=5, size=32)
    r = split.report
    assert (r.images, r.captions, r.source, r.split) == (5, 5 * caps, world, "train")
    assert r.classes == len(split.class_names)


def test_registered_sources_build():
    from imagetext.registry import DATASETS

    split = DATASETS.build("scenes", split="test", n=2, size=32)
    assert len(split) == 2 and split.multi_label


# ----------------------------------------------------------------------------- on disk


@pytest.mark.parametrize("world", WORLDS)
def test_write_world_layout(world, tmp_path):
    out = tmp_path / world
    summary = write_world(world, out, n_train=3, n_test=2, seed=7, size=32, progress=False)
    assert (summary["train"], summary["test"]) == (3, 2)
    classes = json.loads((out / "classes.json").read_text())
    meta = json.loads((out / "world.json").read_text())
    assert meta["world"] == world and meta["seed"] == 7 and meta["size"] == 32
    assert meta["counts"] == {"train": 3, "test": 2} and meta["class_disjoint"] is False
    assert "generator_version" in meta
    for split, count in (("train", 3), ("test", 2)):
        lines = (out / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == count
        ref = load_synthetic(world, split, n=count, seed=7, size=32)
        for i, (line, sample) in enumerate(zip(lines, ref.samples)):
            rec = json.loads(line)
            assert rec["image"] == f"images/{split}/{i:06d}.png"
            img = Image.open(out / rec["image"])
            assert img.size == (32, 32)
            assert np.array_equal(np.asarray(img.convert("RGB")), pixels(sample))  # PNG is lossless
            assert rec["captions"] == sample.captions and len(rec["captions"]) == len(rec["caption_attributes"])
            assert rec["labels"] == list(sample.labels)
            assert rec["label_names"] == [classes[k] for k in rec["labels"]]
            assert rec["attributes"] == sample.attributes
    assert not list(out.glob("*.tmp"))


def test_write_world_never_mixes_old_and_new_output(tmp_path, monkeypatch):
    from imagetext.data.synthetic import world as world_mod
    from imagetext.errors import UserError

    out = tmp_path / "w"
    write_world("birds", out, n_train=4, n_test=2, seed=0, size=32, progress=False)
    (out / "notes.txt").write_text("mine")
    (out / "train.jsonl.tmp").write_text("half a file")
    rendered = []
    real = world_mod.render
    monkeypatch.setattr(world_mod, "render", lambda *a: rendered.append(1) or real(*a))
    # a non-empty folder is refused before a single image is rendered
    with pytest.raises(UserError, match="not empty.*--overwrite"):
        write_world("birds", out, n_train=2, n_test=1, seed=1, size=32, progress=False)
    assert not rendered and len(list((out / "images" / "train").glob("*.png"))) == 4
    # bad arguments are refused before the folder is touched
    with pytest.raises(ConfigError):
        write_world("birds", out, n_train=-1, n_test=1, seed=1, size=32, progress=False, overwrite=True)
    assert len(list((out / "images" / "train").glob("*.png"))) == 4
    # --overwrite: a smaller world replaces the larger one completely; other files stay
    write_world("birds", out, n_train=2, n_test=1, seed=1, size=32, progress=False, overwrite=True)
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["000000.png", "000001.png"]
    assert sorted(p.name for p in (out / "images" / "test").iterdir()) == ["000000.png"]
    assert (out / "notes.txt").read_text() == "mine" and not list(out.glob("*.tmp"))
    assert json.loads((out / "world.json").read_text())["counts"] == {"train": 2, "test": 1}
    # a file where the folder should be
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        write_world("birds", tmp_path / "file", n_train=1, n_test=1, seed=0, size=32, progress=False)
