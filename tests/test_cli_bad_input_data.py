"""Bad input to ``t2i data synth`` and ``t2i data inspect``, as a table.

Each row: (id, argv with ``{t}`` for the test's tmp_path, a setup that makes the input
there, the expected exit code, words the output must contain). Every row runs through
:func:`cli_harness.check_case`, which also fails on any traceback. Exit codes: 0 fine
(conversions are noted), 1 items were skipped (and named), 2 a user error in one line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, NamedTuple

import pytest

try:
    from cli_harness import check_case, run_cli
    from fixtures_data import build_coco, build_cub, build_karpathy, build_synthetic, write_image, write_jsonl
except ImportError:  # tests/ collected as a package
    from tests.cli_harness import check_case, run_cli
    from tests.fixtures_data import build_coco, build_cub, build_karpathy, build_synthetic, write_image, write_jsonl


# --- setups -------------------------------------------------------------------------------
def nothing(t: Path) -> None:
    pass


def a_file(t: Path) -> None:
    (t / "file").write_text("not a folder\n")


def nonempty_out(t: Path) -> None:
    (t / "out").mkdir()
    (t / "out" / "keep.txt").write_text("mine\n")


def rows(t: Path, labels=None, extra=None, n: int = 3, name: str = "train.jsonl") -> None:
    """``n`` good rows (one image each) in ``name``; ``labels`` puts a label on each row."""
    out = []
    for i in range(n):
        write_image(t / "d" / f"{i}.png", "png", seed=i)
        row = {"image": f"{i}.png", "caption": f"picture {i}"}
        if labels is not None:
            row["label"] = labels[i]
        out.append(row)
    write_jsonl(t / "d" / name, out + list(extra or []))


def label_rows(*labels) -> Callable[[Path], None]:
    return lambda t: rows(t, labels=list(labels), n=len(labels))


def raw_jsonl(data: bytes, images: int = 2, name: str = "train.jsonl") -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        for i in range(images):
            write_image(t / "d" / f"{i}.png", "png", seed=i)
        (t / "d" / name).write_bytes(data)
    return setup


def good_lines(n: int = 2) -> List[bytes]:
    return [json.dumps({"image": f"{i}.png", "caption": f"un café {i}"}, ensure_ascii=False).encode() for i in range(n)]


def cp1252_line(t: Path) -> None:
    lines = good_lines(2)
    lines[1] = lines[1].replace("é".encode(), b"\xe9")
    raw_jsonl(b"\n".join(lines) + b"\n")(t)


def csv_file(text: str, encoding: str = "utf-8", images: int = 2) -> Callable[[Path], None]:
    return raw_jsonl(text.encode(encoding), images, name="train.csv")


def cub(**kw) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        keys = build_cub(t / "d")
        for change in kw.get("changes", ()):
            change(t / "d", keys)
    return setup


def cub_missing_image(root: Path, keys) -> None:
    (root / "CUB_200_2011" / "images" / f"{keys['train'][0]}.jpg").unlink()


def cub_cp1252_caption(root: Path, keys) -> None:
    (root / "text" / f"{keys['train'][0]}.txt").write_bytes("a bird\nun oiseau brûlé\n".encode("cp1252"))


def cub_empty_image(root: Path, keys) -> None:
    write_image(root / "CUB_200_2011" / "images" / f"{keys['train'][1]}.jpg", "empty")


def cub_hidden_folder(root: Path, keys) -> None:
    (root / "CUB_200_2011" / "images" / ".ipynb_checkpoints").mkdir()


def cub_bad_pickle(root: Path, keys) -> None:
    (root / "train" / "filenames.pickle").write_bytes(b"not a pickle")


def cub_nan_box(root: Path, keys) -> None:
    txt = root / "CUB_200_2011" / "bounding_boxes.txt"
    txt.write_text(txt.read_text().replace("1 10.0 5.0 12.0 8.0", "1 nan 5.0 12.0 8.0", 1))


def coco(change: Callable[[Path], None] = lambda r: None, **kw) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        build_coco(t / "d", **kw)
        change(t / "d")
    return setup


def coco_missing_image(root: Path) -> None:
    sorted((root / "train2014").iterdir())[0].unlink()


def coco_bad_byte(root: Path) -> None:
    path = root / "annotations" / "captions_train2014.json"
    path.write_bytes(path.read_bytes().replace(b"caption 0", b"caption \xe9", 1))


def coco_float_category(root: Path) -> None:
    path = root / "annotations" / "instances_train2014.json"
    obj = json.loads(path.read_text())
    obj["categories"][1]["id"] = 1.5
    path.write_text(json.dumps(obj))


def karpathy(change: Callable[[dict], None] = lambda o: None, coco_layout: bool = False) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        build_karpathy(t / "d", coco=coco_layout)
        path = next((t / "d").glob("dataset_*.json"))
        obj = json.loads(path.read_text())
        change(obj)
        path.write_text(json.dumps(obj))
    return setup


def set_split(i: int, value) -> Callable[[dict], None]:
    def change(obj: dict) -> None:
        if value is None:
            del obj["images"][i]["split"]
        else:
            obj["images"][i]["split"] = value
    return change


def karpathy_missing_image(t: Path) -> None:
    build_karpathy(t / "d", coco=False)
    (t / "d" / "images" / "img_0.jpg").unlink()


def karpathy_bad_byte(t: Path) -> None:
    build_karpathy(t / "d", coco=False)
    path = t / "d" / "dataset_flickr30k.json"
    path.write_bytes(path.read_bytes().replace(b"Sentence 1", b"Sentence \xe9", 1))


def karpathy_list(t: Path) -> None:
    (t / "d").mkdir()
    (t / "d" / "dataset_coco.json").write_text("[]")


def split_column(*values) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        out = []
        for i, v in enumerate(values):
            write_image(t / "d" / f"{i}.png", "png", seed=i)
            row = {"image": f"{i}.png", "caption": f"picture {i}"}
            if v is not None:
                row["split"] = v
            out.append(row)
        write_jsonl(t / "d" / "metadata.jsonl", out)
    return setup


def folder_with(change: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        rows(t)
        change(t / "d")
    return setup


def truncated_image(d: Path) -> None:
    write_image(d / "1.png", "truncated")


def text_as_image(d: Path) -> None:
    write_image(d / "1.png", "notimage")


def missing_image(d: Path) -> None:
    (d / "2.png").unlink()


def image_is_a_folder(d: Path) -> None:
    (d / "2.png").unlink()
    (d / "2.png").mkdir()


def hidden_metadata(d: Path) -> None:
    (d / "._train.jsonl").write_bytes(b"\x00\x05\x16\x07\xff\xfe junk from macOS\n")


def hidden_image(d: Path) -> None:
    write_image(d / ".hidden.png", "png")
    with open(d / "train.jsonl", "a") as f:
        f.write(json.dumps({"image": ".hidden.png", "caption": "a hidden file named in the metadata"}) + "\n")


def classes_json(obj) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        rows(t, labels=["apple", "zebra", "apple"])
        text = obj if isinstance(obj, str) else json.dumps(obj)
        (t / "d" / "classes.json").write_text(text)
    return setup


def synthetic_broken_world(t: Path) -> None:
    build_synthetic(t / "d")
    (t / "d" / "world.json").write_text("{\"world\": ")


def synthetic_ok(t: Path) -> None:
    build_synthetic(t / "d")


# --- the table ------------------------------------------------------------------------------
class Case(NamedTuple):
    id: str
    argv: List[str]
    setup: Callable[[Path], None]
    code: int
    words: List[str]


SYNTH = ["data", "synth", "--world", "birds", "--size", "32"]
OUT = ["--out", "{t}/out"]


def synth(*extra: str) -> List[str]:
    return SYNTH + list(extra)


def inspect(fmt: str, *extra: str) -> List[str]:
    return ["data", "inspect", "--format", fmt, "--root", "{t}/d", *extra]


CASES = [
    # --- t2i data synth: numbers
    Case("synth-n-train-negative", synth(*OUT, "--n-train", "-1"), nothing, 2, ["--n-train", "must be >= 0"]),
    Case("synth-n-train-not-int", synth(*OUT, "--n-train", "abc"), nothing, 2, ["--n-train", "not an integer"]),
    Case("synth-n-train-float", synth(*OUT, "--n-train", "1.5"), nothing, 2, ["--n-train", "not an integer"]),
    Case("synth-n-test-negative", synth(*OUT, "--n-test", "-3"), nothing, 2, ["--n-test", "must be >= 0"]),
    Case("synth-both-zero", synth(*OUT, "--n-train", "0", "--n-test", "0"), nothing, 2, ["nothing to write"]),
    Case("synth-size-too-small", synth(*OUT, "--size", "16"), nothing, 2, ["--size", "between 32 and 256"]),
    Case("synth-size-too-large", synth(*OUT, "--size", "300"), nothing, 2, ["--size", "between 32 and 256"]),
    Case("synth-size-zero", synth(*OUT, "--size", "0"), nothing, 2, ["--size", "between 32 and 256"]),
    Case("synth-size-not-int", synth(*OUT, "--size", "64px"), nothing, 2, ["--size", "not an integer"]),
    Case("synth-seed-negative", synth(*OUT, "--seed", "-1"), nothing, 2, ["--seed", "2**32"]),
    Case("synth-seed-too-large", synth(*OUT, "--seed", str(2**32)), nothing, 2, ["--seed", "2**32"]),
    Case("synth-unknown-world", ["data", "synth", "--world", "fish", *OUT], nothing, 2, ["--world", "invalid choice"]),
    Case("synth-class-disjoint-scenes", ["data", "synth", "--world", "scenes", "--class-disjoint", *OUT], nothing, 2,
         ["--class-disjoint", "birds"]),
    Case("synth-missing-out", SYNTH, nothing, 2, ["--out"]),
    # --- t2i data synth: output paths
    Case("synth-out-is-a-file", synth("--out", "{t}/file"), a_file, 2, ["--out", "is a file, not a folder"]),
    Case("synth-out-parent-is-a-file", synth("--out", "{t}/file/world"), a_file, 2, ["--out", "is a file, not a folder"]),
    Case("synth-out-not-empty", synth(*OUT, "--n-train", "1", "--n-test", "1"), nonempty_out, 2,
         ["--out", "not empty", "--overwrite"]),
    Case("synth-out-not-empty-overwrite", synth(*OUT, "--n-train", "1", "--n-test", "1", "--overwrite"), nonempty_out, 0,
         ["wrote birds world", "train=1"]),
    Case("synth-out-new", synth("--out", "{t}/new/nested", "--n-train", "1", "--n-test", "0"), nothing, 0, ["wrote"]),
    # --- t2i data inspect: root and format
    Case("inspect-root-missing", inspect("folder"), nothing, 2, ["--root", "no such folder"]),
    Case("inspect-root-is-a-file", ["data", "inspect", "--format", "folder", "--root", "{t}/file"], a_file, 2,
         ["--root", "is a file, not a folder"]),
    Case("inspect-unknown-format", inspect("imagenet"), rows, 2, ["--format", "invalid choice"]),
    Case("inspect-folder-as-cub", inspect("cub"), rows, 2, ["CUB_200_2011", "not found"]),
    Case("inspect-folder-as-coco", inspect("coco"), rows, 2, ["captions_train2014.json", "not found"]),
    Case("inspect-folder-as-karpathy", inspect("karpathy"), rows, 2, ["dataset_*.json", "--format"]),
    Case("inspect-folder-as-synthetic", inspect("synthetic"), rows, 2, ["world.json", "not found"]),
    Case("inspect-coco-as-folder", inspect("folder"), coco(), 2, ["no metadata for split 'train'"]),
    # --- unknown --split
    Case("inspect-cub-unknown-split", inspect("cub", "--split", "tst"), cub(), 2, ["unknown split 'tst'", "did you mean 'test'"]),
    Case("inspect-coco-unknown-split", inspect("coco", "--split", "restval"), coco(), 2, ["unknown split 'restval'", "train, val, test"]),
    Case("inspect-karpathy-unknown-split", inspect("karpathy", "--split", "tset"), karpathy(), 2,
         ["unknown split 'tset'", "did you mean 'test'"]),
    Case("inspect-folder-split-nowhere", inspect("folder", "--split", "val"), rows, 2, ["split 'val'", "splits here: train"]),
    Case("inspect-folder-split-column-nowhere", inspect("folder", "--split", "val"), split_column("train", "test"), 2,
         ["no rows of split 'val'", "test, train"]),
    # --- encodings
    Case("inspect-jsonl-cp1252-line", inspect("folder"), cp1252_line, 1, ["train.jsonl:2", "invalid utf-8", "0xe9", "iconv"]),
    Case("inspect-csv-cp1252-row", inspect("folder"), csv_file("image,caption\n0.png,un café\n1.png,plain\n", "cp1252"), 1,
         ["train.csv:2", "invalid utf-8", "iconv"]),
    Case("inspect-csv-header-not-utf8", inspect("folder"), csv_file("imäge,caption\n0.png,x\n", "latin-1"), 2,
         ["train.csv:1", "header line is not valid utf-8"]),
    Case("inspect-jsonl-utf8-bom", inspect("folder"), raw_jsonl(b"\xef\xbb\xbf" + b"\n".join(good_lines()) + b"\n"), 0,
         ["utf-8 with bom", "converted"]),
    Case("inspect-csv-utf16", inspect("folder"), csv_file("image,caption\n0.png,un café\n1.png,x\n", "utf-16"), 0,
         ["utf-16", "converted"]),
    Case("inspect-karpathy-json-bad-byte", inspect("karpathy"), karpathy_bad_byte, 2, ["dataset_flickr30k.json:1:", "invalid utf-8"]),
    Case("inspect-coco-json-bad-byte", inspect("coco"), coco(coco_bad_byte), 2, ["captions_train2014.json:1:", "invalid utf-8"]),
    Case("inspect-cub-caption-cp1252", inspect("cub"), cub(changes=[cub_cp1252_caption]), 1, [".txt:2", "invalid utf-8"]),
    # --- labels
    Case("inspect-label-true", inspect("folder"), label_rows(0, True, 2), 1, ["train.jsonl:2", "invalid label", "boolean", "true"]),
    Case("inspect-label-1.5", inspect("folder"), label_rows(0, 1.5, 2), 1, ["train.jsonl:2", "invalid label", "whole number", "1.5"]),
    Case("inspect-label-26.0", inspect("folder"), label_rows(26.0, 1, 2), 0, ["classes:         27", "no problems found"]),
    Case("inspect-label-null", inspect("folder"), label_rows(0, None, 2), 1, ["train.jsonl:2", "invalid label", "null"]),
    Case("inspect-label-nested-list", inspect("folder"), label_rows(0, [[1]], 2), 1, ["train.jsonl:2", "invalid label", "list"]),
    Case("inspect-label-object", inspect("folder"), label_rows(0, {"id": 1}, 2), 1, ["train.jsonl:2", "json object"]),
    Case("inspect-label-negative", inspect("folder"), label_rows(0, -1, 2), 1, ["train.jsonl:2", "negative"]),
    Case("inspect-labels-mixed", inspect("folder"), label_rows(0, "cat", 2), 2,
         ["mix class ids and class names", "train.jsonl:1", "train.jsonl:2", "classes.json"]),
    Case("inspect-csv-label-true", inspect("folder"), csv_file("image,caption,label\n0.png,x,cat\n1.png,y,TRUE\n"), 1,
         ["train.csv:3", "invalid label", "true"]),
    Case("inspect-label-not-in-classes-json", inspect("folder"), classes_json(["apple"]), 1, ["unknown label 'zebra'", "classes.json"]),
    Case("inspect-classes-json-bool-id", inspect("folder"), classes_json({"apple": True, "zebra": 0}), 2,
         ["classes.json", "is not a class id"]),
    Case("inspect-classes-json-broken", inspect("folder"), classes_json("[\"apple\", "), 2, ["classes.json:1:", "not valid json"]),
    Case("inspect-coco-category-1.5", inspect("coco"), coco(coco_float_category), 2, ["instances_train2014.json", "id must be an integer"]),
    # --- unknown split values inside the data
    Case("inspect-karpathy-split-tset", inspect("karpathy", "--split", "test"), karpathy(set_split(1, "tset")), 1,
         ["img_1.jpg", "unknown split 'tset'", "did you mean 'test'"]),
    Case("inspect-karpathy-split-Test", inspect("karpathy"), karpathy(set_split(2, "Test")), 1,
         ["img_2.jpg", "unknown split 'test'", "did you mean 'test'"]),
    Case("inspect-karpathy-split-missing", inspect("karpathy"), karpathy(set_split(0, None)), 1, ["img_0.jpg", "no 'split' value"]),
    Case("inspect-folder-split-tset", inspect("folder", "--split", "test"), split_column("test", "tset", "train"), 1,
         ["metadata.jsonl:2", "unknown split 'tset'", "did you mean 'test'"]),
    Case("inspect-folder-split-missing-value", inspect("folder"), split_column("train", None, "train"), 1,
         ["metadata.jsonl:2", "no split value"]),
    # --- missing images, per format
    Case("inspect-cub-missing-image", inspect("cub"), cub(changes=[cub_missing_image]), 1, ["_0000_1.jpg", "image file not found"]),
    Case("inspect-coco-missing-image", inspect("coco"), coco(coco_missing_image), 1, ["coco_train2014_000000000101.jpg", "not found"]),
    Case("inspect-karpathy-missing-image", inspect("karpathy"), karpathy_missing_image, 1, ["img_0.jpg", "image file not found"]),
    Case("inspect-folder-missing-image", inspect("folder"), folder_with(missing_image), 1, ["train.jsonl:3", "2.png", "not found"]),
    Case("inspect-folder-image-is-a-folder", inspect("folder"), folder_with(image_is_a_folder), 1, ["2.png", "not found"]),
    # --- broken image files
    Case("inspect-folder-truncated-image", inspect("folder"), folder_with(truncated_image), 1, ["1.png", "cannot decode image"]),
    Case("inspect-folder-text-as-image", inspect("folder"), folder_with(text_as_image), 1, ["1.png", "not an image"]),
    Case("inspect-cub-empty-image", inspect("cub"), cub(changes=[cub_empty_image]), 1, ["_0001_2.jpg", "not an image"]),
    Case("inspect-no-decode-misses-truncation", inspect("folder", "--no-decode"), folder_with(truncated_image), 0,
         ["images:          3"]),
    # --- hidden files
    Case("inspect-folder-hidden-metadata-ignored", inspect("folder"), folder_with(hidden_metadata), 0, ["no problems found"]),
    Case("inspect-folder-hidden-image-named", inspect("folder"), folder_with(hidden_image), 0, ["images:          4"]),
    Case("inspect-cub-hidden-class-folder", inspect("cub"), cub(changes=[cub_hidden_folder]), 0, ["classes:         4"]),
    # --- metadata content
    Case("inspect-empty-metadata", inspect("folder"), raw_jsonl(b""), 2, ["no usable image", "lists none"]),
    Case("inspect-blank-metadata", inspect("folder"), raw_jsonl(b"\n  \n\n"), 2, ["no usable image"]),
    Case("inspect-all-rows-bad", inspect("folder"), raw_jsonl(b"{oops\n[1]\n"), 2, ["no usable image", "2 item(s) skipped"]),
    Case("inspect-invalid-json-line", inspect("folder"), raw_jsonl(b"\n".join(good_lines()[:1] + [b"{oops"]) + b"\n"), 1,
         ["train.jsonl:2", "invalid json"]),
    Case("inspect-json-line-not-object", inspect("folder"), raw_jsonl(b"\n".join(good_lines()[:1] + [b"[1, 2]"]) + b"\n"), 1,
         ["train.jsonl:2", "must be a json object"]),
    Case("inspect-csv-without-image-column", inspect("folder"), csv_file("picture,caption\n0.png,x\n"), 2, ["train.csv", "no image column"]),
    Case("inspect-row-without-image", inspect("folder"), lambda t: rows(t, extra=[{"caption": "where is it"}]), 1,
         ["train.jsonl:4", "without an image"]),
    Case("inspect-row-empty-caption", inspect("folder"), lambda t: rows(t, extra=[{"image": "0.png", "caption": "  "}]), 1,
         ["train.jsonl:4", "empty or whitespace-only caption"]),
    Case("inspect-synthetic-world-json-broken", inspect("synthetic"), synthetic_broken_world, 2, ["world.json:1:", "not valid json"]),
    Case("inspect-synthetic-ok", inspect("synthetic", "--split", "test"), synthetic_ok, 0, ["no problems found"]),
    Case("inspect-cub-pickle-garbage", inspect("cub"), cub(changes=[cub_bad_pickle]), 2, ["filenames.pickle", "not a readable pickle"]),
    Case("inspect-cub-nan-box", inspect("cub"), cub(changes=[cub_nan_box]), 0, ["box is not four finite numbers", "converted"]),
    Case("inspect-coco-no-instances", inspect("coco"), coco(instances=False), 0, ["instances_train2014.json", "empty labels"]),
    Case("inspect-karpathy-json-not-object", inspect("karpathy"), karpathy_list, 2, ["dataset_coco.json", "expected a json object"]),
    Case("inspect-json-lists-problems", inspect("folder", "--json"), folder_with(missing_image), 1, ['"problems"', "2.png"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_table(case: Case, tmp_path: Path):
    case.setup(tmp_path)
    argv = [a.replace("{t}", str(tmp_path)) for a in case.argv]
    check_case(argv, case.code, case.words)


def test_table_size():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


# --- properties -----------------------------------------------------------------------------
def test_inspect_counts_every_row_used_or_skipped(tmp_path):
    """images used + rows reported as skipped == rows named in the metadata (one row per image)."""
    d = tmp_path / "d"
    good = [{"image": f"{i}.png", "caption": f"picture {i}", "label": i % 3} for i in range(6)]
    for i in range(6):
        write_image(d / f"{i}.png", "png", seed=i)
    write_image(d / "trunc.png", "truncated")
    write_image(d / "text.png", "notimage")
    bad = [
        {"image": "gone.png", "caption": "missing file", "label": 0},
        {"image": "trunc.png", "caption": "truncated file", "label": 1},
        {"image": "text.png", "caption": "not an image", "label": 1},
        {"image": "6.png", "caption": "boolean label", "label": True},
        {"image": "7.png", "caption": "fractional label", "label": 1.5},
        {"image": "8.png", "caption": " ", "label": 2},
        {"caption": "no image at all", "label": 0},
    ]
    lines = [json.dumps(r).encode() for r in good[:3] + bad + good[3:]]
    lines.insert(4, b"{broken json")
    lines.insert(7, '{"image": "9.png", "caption": "caf\xe9"}'.encode("latin-1"))  # not UTF-8
    (d / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    n_rows = len(lines)

    r = run_cli(["data", "inspect", "--format", "folder", "--root", str(d), "--json"])
    assert r.code == 1 and not r.traceback
    rep = json.loads(r.out)
    skipped_rows = {p["line"] for p in rep["problems"] if p["action"] == "skipped"}
    # the caption-only problem of the " " row is on its line too: one line, one row
    assert rep["images"] + len(skipped_rows) == n_rows
    assert rep["images"] == 6
    assert all(p["file"].endswith("train.jsonl") for p in rep["problems"])


def test_overwrite_leaves_no_stale_images(tmp_path):
    out = tmp_path / "w"
    assert run_cli(["data", "synth", "--world", "birds", "--size", "32", "--out", str(out), "--n-train", "5",
                    "--n-test", "2", "--json"]).code == 0
    r = run_cli(["data", "synth", "--world", "birds", "--size", "32", "--out", str(out), "--n-train", "2",
                 "--n-test", "1", "--json", "--overwrite"])
    assert r.code == 0
    assert len(list((out / "images" / "train").glob("*.png"))) == 2
    rep = json.loads(run_cli(["data", "inspect", "--format", "synthetic", "--root", str(out), "--json"]).out)
    assert rep["images"] == 2 and rep["skipped"] == 0


def test_refusal_happens_before_rendering(tmp_path, monkeypatch):
    from imagetext.data.synthetic import world as world_mod

    def boom(*a, **k):
        raise AssertionError("rendered before the output folder was checked")

    monkeypatch.setattr(world_mod, "load_synthetic", boom)
    nonempty_out(tmp_path)
    check_case(synth("--out", str(tmp_path / "out")), 2, ["not empty"])
    a_file(tmp_path)
    check_case(synth("--out", str(tmp_path / "file")), 2, ["is a file"])


def test_data_cli_imports_no_torch_or_numpy():
    import subprocess
    import sys

    code = "import sys, imagetext.data.cli; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_every_data_option_has_help():
    import argparse

    from imagetext.cli import build_parser

    parser = build_parser()
    data = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["data"]
    subs = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.help, f"t2i data {name} {action.option_strings}: no help line"
