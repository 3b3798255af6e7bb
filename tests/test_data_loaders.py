"""Loaders for the published layouts (CUB+AttnGAN, COCO 2014, Karpathy), users' folders,
synthetic worlds on disk, and ``inspect_dataset`` / ``format_report``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

try:
    from fixtures_data import CUB_CLASSES, build_coco, build_cub, build_folder, build_karpathy, build_synthetic, py2_pickle, py2_str_pickle_bytes, write_image, write_jsonl
except ImportError:  # tests/ collected as a package
    from tests.fixtures_data import CUB_CLASSES, build_coco, build_cub, build_folder, build_karpathy, build_synthetic, py2_pickle, py2_str_pickle_bytes, write_image, write_jsonl

from imagetext.data import format_report, inspect_dataset
from imagetext.data.coco import load_coco
from imagetext.data.cub import load_cub
from imagetext.data.folder import load_folder
from imagetext.data.karpathy import load_karpathy
from imagetext.data.records import BadInputPolicy
from imagetext.errors import DataError
from imagetext.registry import DATASETS

POLICY = BadInputPolicy()


# --- CUB ---------------------------------------------------------------------------------
def test_cub_class_disjoint_splits_with_global_ids(tmp_path):
    keys = build_cub(tmp_path)
    train, test = load_cub(tmp_path, "train", POLICY), load_cub(tmp_path, "test", POLICY)
    assert [s.key for s in train.samples] == keys["train"]
    assert [s.key for s in test.samples] == keys["test"]
    assert train.class_names == test.class_names == CUB_CLASSES
    assert {s.labels for s in train.samples} == {(0,), (1,)}
    assert {s.labels for s in test.samples} == {(2,), (3,)}
    assert not train.multi_label
    s = train.samples[0]
    assert s.captions == [f"a bird of class 0 picture 0 caption {k}" for k in range(3)]
    assert s.bbox == (10.0, 5.0, 12.0, 8.0)
    assert s.image_path == tmp_path / "CUB_200_2011" / "images" / f"{s.key}.jpg"
    assert s.load_image().size == (18, 18)  # the 0.75 crop of a 40x30 image
    rep = train.report
    assert (rep.images, rep.captions, rep.classes, rep.labels, rep.skipped) == (6, 18, 4, 6, 0)
    assert len(load_cub(tmp_path, "val", POLICY)) == len(test)  # val is an alias of test


def test_cub_str_pickles_all_split_and_no_crop(tmp_path):
    keys = build_cub(tmp_path, classes_txt=False)
    # Python 3 str entries (what encoding="latin1" yields from a py2 pickle) load too
    py2_pickle(tmp_path / "train" / "filenames.pickle", list(keys["train"]))
    train = load_cub(tmp_path, "train", POLICY, crop=False, max_captions=2)
    assert [s.key for s in train.samples] == keys["train"]
    assert train.class_names == CUB_CLASSES  # from the image folders
    assert all(s.bbox is None and len(s.captions) == 2 for s in train.samples)
    assert train.samples[0].load_image().size == (40, 30)
    everything = load_cub(tmp_path, "all", POLICY)
    assert len(everything) == 12 and [s.key for s in everything.samples[:6]] == keys["train"]


def test_cub_reads_pickles_written_by_python2(tmp_path):
    keys = build_cub(tmp_path)
    # the exact opcodes Python 2 writes for a list of str (SHORT_BINSTRING), not bytes objects
    (tmp_path / "test" / "filenames.pickle").write_bytes(py2_str_pickle_bytes(keys["test"]))
    assert [s.key for s in load_cub(tmp_path, "test", POLICY).samples] == keys["test"]


def test_cub_class_info_mismatch_is_noted(tmp_path):
    keys = build_cub(tmp_path)
    py2_pickle(tmp_path / "train" / "class_info.pickle", [1, 1, 1, 2, 2, 7])
    train = load_cub(tmp_path, "train", POLICY)
    assert train.samples[5].labels == (1,)  # the folder wins
    notes = [p for p in train.report.problems if "class_info" in p.reason]
    assert len(notes) == 1 and notes[0].file.endswith("filenames.pickle[5]") and notes[0].action == "converted"


def test_cub_text_c10_and_missing_metadata(tmp_path):
    build_cub(tmp_path)
    (tmp_path / "text").rename(tmp_path / "text_c10")
    assert len(load_cub(tmp_path, "train", POLICY)) == 6
    (tmp_path / "test" / "filenames.pickle").unlink()
    with pytest.raises(DataError, match=r"test/filenames.pickle: not found"):
        load_cub(tmp_path, "test", POLICY)
    (tmp_path / "train" / "filenames.pickle").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"filenames.pickle: not a readable pickle"):
        load_cub(tmp_path, "train", POLICY)
    with pytest.raises(DataError, match="CUB_200_2011"):
        load_cub(tmp_path / "nowhere", "train", POLICY)


def test_cub_loads_through_the_registry(tmp_path):
    build_cub(tmp_path)
    split = DATASETS.build("cub", root=tmp_path, split="test")
    assert len(split) == 6 and split.report.source == "cub"


# --- COCO --------------------------------------------------------------------------------
def test_coco_multilabels_in_category_id_order(tmp_path):
    build_coco(tmp_path, n_train=4, n_val=3)
    train = load_coco(tmp_path, "train", POLICY)
    assert train.multi_label and train.class_names == ["person", "car", "dog"]
    assert len(train) == 4 and all(len(s.captions) == 5 for s in train.samples)
    assert train.samples[0].labels == ()  # no instances: empty label set
    assert all(s.labels == (0, 2) for s in train.samples[1:])  # person (id 1), dog (id 18); deduplicated
    assert train.samples[1].image_path.parent.name == "train2014"
    test = load_coco(tmp_path, "test", POLICY)
    assert len(test) == 3 and test.samples[0].image_path.parent.name == "val2014"
    assert (train.report.images, train.report.captions, train.report.labels) == (4, 20, 3)


def test_coco_without_instances_has_empty_labels_and_a_note(tmp_path):
    build_coco(tmp_path, instances=False)
    split = load_coco(tmp_path, "val", POLICY)
    assert split.class_names == [] and all(s.labels == () for s in split.samples)
    assert [p.action for p in split.report.problems] == ["converted"]
    assert "instances_val2014.json" in split.report.problems[0].file
    with pytest.raises(DataError, match="unknown split"):
        load_coco(tmp_path, "restval", POLICY)


# --- Karpathy ----------------------------------------------------------------------------
def test_karpathy_coco_splits_and_restval(tmp_path):
    splits = build_karpathy(tmp_path, coco=True)
    train = load_karpathy(tmp_path, "train", POLICY)
    assert [s.key.split("/")[1] for s in train.samples] == [f for f, sp in splits.items() if sp in ("train", "restval")]
    assert len(load_karpathy(tmp_path, "train", POLICY, include_restval=False)) == 2
    test = load_karpathy(tmp_path, "test", POLICY)
    assert len(test) == 1 and test.samples[0].image_path == tmp_path / "val2014" / "img_3.jpg"
    assert test.samples[0].captions[0] == "Sentence 0 about image 3."
    assert test.class_names == [] and test.samples[0].labels == ()


def test_karpathy_flickr_layout_image_root_and_json_choice(tmp_path):
    build_karpathy(tmp_path, coco=False)
    val = load_karpathy(tmp_path, "val", POLICY)
    assert val.samples[0].image_path == tmp_path / "images" / "img_2.jpg"
    other = tmp_path / "elsewhere"
    write_image(other / "img_2.jpg", "png")
    assert load_karpathy(tmp_path, "val", POLICY, image_root=other).samples[0].image_path == other / "img_2.jpg"
    build_karpathy(tmp_path, coco=True)  # now two split files
    with pytest.raises(DataError, match="several split files"):
        load_karpathy(tmp_path, "val", POLICY)
    assert len(load_karpathy(tmp_path, "all", POLICY, json_name="dataset_flickr30k.json")) == 5


# --- folder --------------------------------------------------------------------------------
def test_folder_string_labels_share_ids_across_splits(tmp_path):
    build_folder(tmp_path, n=3, labels="str", split="train")  # zebra, apple, mango
    write_image(tmp_path / "img/t0.png", "png")
    write_jsonl(tmp_path / "test.jsonl", [{"image": "img/t0.png", "caption": "a kiwi", "label": "kiwi"}])
    train, test = load_folder(tmp_path, "train", POLICY), load_folder(tmp_path, "test", POLICY)
    assert train.class_names == test.class_names == ["apple", "kiwi", "mango", "zebra"]
    assert [s.labels for s in train.samples] == [(3,), (0,), (2,)]
    assert test.samples[0].labels == (1,) and not train.multi_label
    assert train.samples[0].captions == ["picture 0 of a zebra", "another view 0"]


def test_folder_int_labels_and_multi_label(tmp_path):
    write_image(tmp_path / "a.png", "png")
    write_image(tmp_path / "b.png", "png")
    write_jsonl(tmp_path / "train.jsonl", [{"image": "a.png", "caption": "x", "labels": [2, 0, 2]}, {"image": "b.png", "caption": "y", "label": 1}])
    split = load_folder(tmp_path, "train", POLICY)
    assert split.multi_label and split.class_names == ["0", "1", "2"]
    assert [s.labels for s in split.samples] == [(0, 2), (1,)]


def test_folder_metadata_csv_with_and_without_split_column(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", "png")
    (tmp_path / "metadata.csv").write_text(
        "image,captions,labels,split\n0.png,one|uno,cat,train\n1.png,two,dog|cat,test\n2.png,three,,train\n"
    )
    train = load_folder(tmp_path, "train", POLICY)
    assert [s.key for s in train.samples] == ["0.png", "2.png"]
    assert train.samples[0].captions == ["one", "uno"] and train.samples[1].labels == ()
    test = load_folder(tmp_path, "test", POLICY)
    assert test.multi_label and test.samples[0].labels == (0, 1)
    (tmp_path / "metadata.csv").write_text("image,caption\n0.png,one\n1.png,two\n")
    assert len(load_folder(tmp_path, "anything", POLICY)) == 2
    (tmp_path / "metadata.csv").unlink()
    with pytest.raises(DataError, match="no metadata for split 'train'"):
        load_folder(tmp_path, "train", POLICY)


def test_folder_csv_without_image_column_names_the_file(tmp_path):
    (tmp_path / "train.csv").write_text("picture,caption\na.png,x\n")
    with pytest.raises(DataError, match=r"train.csv: no image column"):
        load_folder(tmp_path, "train", POLICY)


# --- synthetic world on disk ---------------------------------------------------------------
@pytest.mark.parametrize("multi", [False, True])
def test_synthetic_world_folder(tmp_path, multi):
    build_synthetic(tmp_path, multi=multi)
    train = load_folder(tmp_path, "train", POLICY)
    assert train.class_names == ["red_finch", "blue_jay", "green_parrot"]
    assert train.multi_label is multi  # from world.json, even when a split has one label each
    assert len(train) == 4 and train.samples[1].attributes == {"color": "red", "index": 1}
    assert train.samples[0].caption_attributes == [{"k": k} for k in range(3)]
    if not multi:
        assert [s.labels for s in train.samples] == [(0,), (1,), (2,), (0,)]
    assert np.asarray(train.samples[0].load_image()).shape == (16, 16, 3)


def test_caption_attributes_stay_aligned_when_a_caption_is_dropped(tmp_path):
    write_image(tmp_path / "a.png", "png")
    write_jsonl(tmp_path / "train.jsonl", [{"image": "a.png", "captions": ["one", " ", "three"], "caption_attributes": [{"i": 0}, {"i": 1}, {"i": 2}]}])
    s = load_folder(tmp_path, "train", POLICY).samples[0]
    assert s.captions == ["one", "three"] and s.caption_attributes == [{"i": 0}, {"i": 2}]


# --- inspect -------------------------------------------------------------------------------
def test_inspect_decodes_everything_and_formats(tmp_path):
    a = CUB_CLASSES[0]
    bad = f"{a}/{a[4:]}_0001_2"
    gray = f"{a}/{a[4:]}_0000_1"
    build_cub(tmp_path, image_kinds={bad: "truncated", gray: "gray"})
    rep = inspect_dataset("cub", tmp_path, "train")  # default: decode everything, skip and count
    assert (rep.images, rep.skipped, rep.converted) == (5, 1, 1)
    text = format_report(rep)
    assert "images:          5" in text and "skipped:         1" in text
    assert f"{Path(bad).name}.jpg: cannot decode image" in text and "(skipped)" in text
    assert "grayscale image converted to RGB (converted)" in text
    assert json.loads(json.dumps(rep.as_dict()))["problems"][0]["action"] in ("skipped", "converted")
    assert "... and 1 more" in format_report(rep, max_problems=1)
    # a given policy is respected: without decoding, the truncated file is not noticed
    assert inspect_dataset("cub", tmp_path, "train", BadInputPolicy(check_images=False)).skipped == 0


@pytest.mark.parametrize("fmt", ["coco", "karpathy", "folder", "synthetic"])
def test_inspect_every_format(tmp_path, fmt):
    if fmt == "coco":
        build_coco(tmp_path)
    elif fmt == "karpathy":
        build_karpathy(tmp_path)
    elif fmt == "folder":
        build_folder(tmp_path)
    else:
        build_synthetic(tmp_path)
    rep = inspect_dataset(fmt, tmp_path, "train")
    assert rep.images > 0 and rep.skipped == 0 and rep.source == fmt
    assert "no problems found" in format_report(rep)


def test_inspect_synthetic_needs_world_json(tmp_path):
    build_folder(tmp_path)
    with pytest.raises(DataError, match="world.json: not found"):
        inspect_dataset("synthetic", tmp_path, "train")
    with pytest.raises(DataError, match="unknown data format"):
        inspect_dataset("imagenet", tmp_path, "train")


# --- strict labels -----------------------------------------------------------------------
def _labelled_folder(root, labels, csv=False):
    """One image per label value; returns the metadata lines (1-based) in order."""
    rows = []
    for i, lab in enumerate(labels):
        write_image(root / f"{i}.png", "png", seed=i)
        rows.append({"image": f"{i}.png", "caption": f"picture {i}", "label": lab})
    if csv:
        text = "image,caption,label\n" + "".join(f"{r['image']},{r['caption']},{r['label']}\n" for r in rows)
        (root / "train.csv").write_text(text)
    else:
        write_jsonl(root / "train.jsonl", rows)


@pytest.mark.parametrize("bad,why", [(True, "boolean"), (1.5, "whole number"), (None, "null"), ([[1]], "list"),
                                     ({"id": 1}, "JSON object"), (-2, "negative"), ("", "empty"), ("2.5", "whole number")])
def test_an_invalid_label_skips_its_row_and_renumbers_nothing(tmp_path, bad, why):
    good = [3, 0, 7, 3]
    _labelled_folder(tmp_path, good[:2] + [bad] + good[2:])
    split = load_folder(tmp_path, "train", POLICY)
    assert [s.labels for s in split.samples] == [(3,), (0,), (7,), (3,)]  # exactly as without the bad row
    assert split.class_names == [str(i) for i in range(8)]
    (p,) = split.report.problems
    assert p.line == 3 and p.action == "skipped" and "invalid label" in p.reason and why in p.reason
    with pytest.raises(DataError, match=r"train.jsonl:3: invalid label"):
        load_folder(tmp_path, "train", BadInputPolicy(on_error="error"))


def test_an_invalid_label_does_not_renumber_names(tmp_path):
    _labelled_folder(tmp_path, ["zebra", True, "apple", 1.5])
    split = load_folder(tmp_path, "train", POLICY)
    assert split.class_names == ["apple", "zebra"] and [s.labels for s in split.samples] == [(1,), (0,)]
    assert [p.line for p in split.report.problems] == [2, 4]


def test_integral_float_and_digit_string_ids_are_ids(tmp_path):
    _labelled_folder(tmp_path, [26.0, "3", 0, 26])
    split = load_folder(tmp_path, "train", POLICY)
    assert [s.labels for s in split.samples] == [(26,), (3,), (0,), (26,)]
    assert len(split.class_names) == 27 and not split.report.problems


def test_csv_label_cells_follow_the_same_rules(tmp_path):
    _labelled_folder(tmp_path, ["26.0", "true", "1.5", "4", "nan"], csv=True)
    split = load_folder(tmp_path, "train", POLICY)
    assert [s.labels for s in split.samples] == [(26,), (4,)]
    assert [p.line for p in split.report.problems] == [3, 4, 6]
    assert all("invalid label" in p.reason for p in split.report.problems)


def test_mixed_ids_and_names_without_classes_json_is_an_error_naming_both(tmp_path):
    _labelled_folder(tmp_path, [1, "cat", 2])
    with pytest.raises(DataError, match=r"mix class ids and class names \(train.jsonl:1 has id 1, train.jsonl:2 has name \"cat\"\).*classes.json"):
        load_folder(tmp_path, "train", POLICY)
    (tmp_path / "classes.json").write_text(json.dumps(["dog", "cat", "owl"]))
    split = load_folder(tmp_path, "train", POLICY)  # with classes.json a mix is well defined
    assert [s.labels for s in split.samples] == [(1,), (1,), (2,)]


def test_classes_json_with_a_boolean_or_duplicate_is_an_error(tmp_path):
    _labelled_folder(tmp_path, ["a", "b"])
    (tmp_path / "classes.json").write_text(json.dumps({"a": True, "b": 0}))
    with pytest.raises(DataError, match="classes.json: class 'a': id true is not a class id"):
        load_folder(tmp_path, "train", POLICY)
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b", "a"]))
    with pytest.raises(DataError, match="listed twice"):
        load_folder(tmp_path, "train", POLICY)
    (tmp_path / "classes.json").write_text(json.dumps({"a": 1.0, "b": 0}))
    assert [s.labels for s in load_folder(tmp_path, "train", POLICY).samples] == [(1,), (0,)]


def test_coco_category_ids_are_strict(tmp_path):
    build_coco(tmp_path, n_train=3, n_val=1)
    inst = tmp_path / "annotations" / "instances_train2014.json"
    obj = json.loads(inst.read_text())
    obj["annotations"][0]["category_id"] = True  # would have matched id 1 ("person")
    obj["annotations"][1]["category_id"] = 1.0  # the number 1: person
    inst.write_text(json.dumps(obj))
    split = load_coco(tmp_path, "train", POLICY)
    (p,) = split.report.problems
    assert "1 instance annotations with an unknown category_id (e.g. true)" in p.reason
    obj["categories"][0]["id"] = 1.5
    inst.write_text(json.dumps(obj))
    with pytest.raises(DataError, match=r"instances_train2014.json: category .*id must be an integer"):
        load_coco(tmp_path, "train", POLICY)


def test_cub_classes_txt_bad_line_is_a_problem_and_renumbers_nothing(tmp_path):
    build_cub(tmp_path)
    txt = tmp_path / "CUB_200_2011" / "classes.txt"
    lines = txt.read_bytes().splitlines(keepends=True)
    lines[0] = b"x " + lines[0]
    lines[2] = lines[2].replace(b"Sooty", b"S\xf6oty")
    txt.write_bytes(b"".join(lines))
    train = load_cub(tmp_path, "train", POLICY)
    assert train.class_names == CUB_CLASSES  # the image folders fill in what classes.txt lost
    assert {s.labels for s in train.samples} == {(0,), (1,)}
    assert sorted((p.line, p.action) for p in train.report.problems) == [(1, "skipped"), (3, "skipped")]


# --- unknown splits ----------------------------------------------------------------------
def test_karpathy_unknown_split_values_are_reported_with_a_suggestion(tmp_path):
    build_karpathy(tmp_path, coco=False)
    path = tmp_path / "dataset_flickr30k.json"
    obj = json.loads(path.read_text())
    obj["images"][1]["split"] = "tset"
    obj["images"][2]["split"] = "Test"
    del obj["images"][4]["split"]
    path.write_text(json.dumps(obj))
    for split in ("train", "test", "val"):
        rep = load_karpathy(tmp_path, split, POLICY).report
        reasons = sorted(p.reason for p in rep.problems)
        assert reasons == ["no 'split' value; it belongs to no split",
                           "unknown split 'Test'; did you mean 'test'?",
                           "unknown split 'tset'; did you mean 'test'?"], split
        assert any("img_1.jpg" in p.file for p in rep.problems)
    assert len(load_karpathy(tmp_path, "all", POLICY)) == 5  # "all" takes every image
    with pytest.raises(DataError, match=r"unknown split 'tset' \(did you mean 'test'\?\); available splits"):
        load_karpathy(tmp_path, "tset", POLICY)


def test_folder_split_column_near_misses_missing_values_and_custom_splits(tmp_path):
    for i in range(6):
        write_image(tmp_path / f"{i}.png", "png", seed=i)
    values = ["train", "tset", "Test", "", "fold1", "test"]
    write_jsonl(tmp_path / "metadata.jsonl", [{"image": f"{i}.png", "caption": "x", "split": v} for i, v in enumerate(values)])
    test = load_folder(tmp_path, "test", POLICY)
    assert [s.key for s in test.samples] == ["5.png"]
    got = sorted((p.line, p.reason) for p in test.report.problems)
    assert got == [(2, "unknown split 'tset' (did you mean 'test'?)"), (3, "unknown split 'Test' (did you mean 'test'?)"),
                   (4, "no split value (other rows of this file have one)")]
    assert load_folder(tmp_path, "train", POLICY).report.skipped == 3  # reported in every split
    assert [s.key for s in load_folder(tmp_path, "fold1", POLICY).samples] == ["4.png"]  # a custom split
    with pytest.raises(DataError, match=r"no rows of split 'val'; its split column has: fold1, test, train"):
        load_folder(tmp_path, "val", POLICY)


def test_folder_split_that_exists_nowhere_lists_the_splits(tmp_path):
    build_folder(tmp_path, split="train")
    build_folder(tmp_path, split="test")
    with pytest.raises(DataError, match=r"no metadata for split 'val'.*splits here: test, train"):
        load_folder(tmp_path, "val", POLICY)


# --- missing images, per loader ------------------------------------------------------------
def test_every_loader_reports_a_missing_image_by_name(tmp_path):
    cub, coco, kp, fo = (tmp_path / n for n in ("cub", "coco", "kp", "fo"))
    keys = build_cub(cub)
    (cub / "CUB_200_2011" / "images" / f"{keys['train'][1]}.jpg").unlink()
    build_coco(coco)
    victim = sorted((coco / "train2014").iterdir())[0]
    victim.unlink()
    build_karpathy(kp, coco=False)
    (kp / "images" / "img_0.jpg").unlink()
    build_folder(fo)
    (fo / "img" / "train_2.png").unlink()
    for fmt, root, name, n in (("cub", cub, Path(keys["train"][1]).name + ".jpg", 5), ("coco", coco, victim.name, 3),
                               ("karpathy", kp, "img_0.jpg", 2), ("folder", fo, "train_2.png", 3)):
        rep = inspect_dataset(fmt, root, "train")
        assert rep.images == n and rep.skipped == 1, fmt
        assert name in str(rep.problems[0]) and "not found" in rep.problems[0].reason, fmt
