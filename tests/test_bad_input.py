"""Bad input: odd images are converted and counted, broken ones skipped and counted (or
raised as DataError naming file and line), odd caption encodings decoded with a note."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

try:
    from fixtures_data import CUB_CLASSES, build_coco, build_cub, build_folder, write_image, write_jsonl
except ImportError:  # tests/ collected as a package
    from tests.fixtures_data import CUB_CLASSES, build_coco, build_cub, build_folder, write_image, write_jsonl

from imagetext.data.coco import load_coco
from imagetext.data.cub import load_cub
from imagetext.data.folder import load_folder
from imagetext.data.images import check_image, crop_to_bbox, open_rgb
from imagetext.data.records import BadInputPolicy, DataReport, decode_lines, decode_text, read_lines
from imagetext.errors import DataError

SKIP = BadInputPolicy(on_error="skip", check_images=True)
ERROR = BadInputPolicy(on_error="error", check_images=True)


# --- images --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,note", [("gray", "grayscale"), ("cmyk", "CMYK"), ("rgba", "RGBA"), ("palette", "palette"), ("palette_t", "palette"), ("16bit", "16-bit")]
)
def test_open_rgb_converts_and_names_the_conversion(tmp_path, kind, note):
    path = write_image(tmp_path / f"x.{kind}", kind)
    img, got = open_rgb(path)
    assert img.mode == "RGB" and img.size == (32, 24)
    assert got == note


def test_plain_rgb_has_no_note(tmp_path):
    img, note = open_rgb(write_image(tmp_path / "a.png", "png"))
    assert note is None and img.mode == "RGB"


def test_grayscale_becomes_three_equal_channels(tmp_path):
    arr = np.asarray(open_rgb(write_image(tmp_path / "g.jpg", "gray"))[0]).astype(int)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert arr.std() > 10  # content survived


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.asarray(open_rgb(write_image(tmp_path / "t.png", "rgba"))[0])
    assert (arr[:, :16] == 255).all()  # transparent half -> white, not black
    assert arr[:, 16:].std() > 10


def test_16bit_is_scaled_not_clipped(tmp_path):
    arr = np.asarray(open_rgb(write_image(tmp_path / "s.png", "16bit"))[0])[..., 0].astype(int)
    row = arr[0]
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) >= 0).all()
    # a ramp over 0..65535 scaled by /257 keeps its mid-grey; clipping would saturate
    assert 100 < row[len(row) // 2] < 160
    assert (row == 255).sum() <= 2


@pytest.mark.parametrize("kind", ["truncated", "notimage", "empty"])
def test_broken_images_raise_dataerror_naming_the_file(tmp_path, kind):
    path = write_image(tmp_path / f"bad_{kind}.jpg", kind)
    with pytest.raises(DataError, match=f"bad_{kind}.jpg"):
        open_rgb(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never flipped globally


def test_missing_image_raises_dataerror(tmp_path):
    with pytest.raises(DataError, match="nothere.jpg: image file not found"):
        open_rgb(tmp_path / "nothere.jpg")


def test_crop_to_bbox_follows_the_075_rule():
    img = Image.new("RGB", (40, 30))
    # box (10, 5, 12, 8): r = int(12 * .75) = 9, centre (16, 9) -> x 7..25, y 0..18 (clamped)
    assert crop_to_bbox(img, (10, 5, 12, 8)).size == (18, 18)
    # box in the middle of a big image: a 2r square
    assert crop_to_bbox(Image.new("RGB", (200, 200)), (80, 90, 40, 20)).size == (60, 60)
    # clamped at the right/bottom border
    assert crop_to_bbox(img, (35, 25, 10, 10)).size == (40 - 33, 30 - 23)
    # degenerate box: unchanged
    assert crop_to_bbox(img, (50, 50, 0, 0)).size == (40, 30)


def test_check_image_records_conversion_and_skips(tmp_path):
    report = DataReport("t", str(tmp_path), "train")
    assert check_image(write_image(tmp_path / "g.jpg", "gray"), report, SKIP)
    assert not check_image(write_image(tmp_path / "b.jpg", "truncated"), report, SKIP)
    assert not check_image(tmp_path / "missing.jpg", report, SKIP, where="meta.jsonl", line=7)
    assert (report.converted, report.skipped) == (1, 2)
    assert str(report.problems[-1]).startswith("meta.jsonl:7: image ")
    # without check_images only existence is checked (decoding is the Dataset's job)
    assert check_image(tmp_path / "b.jpg", DataReport("t", "", ""), BadInputPolicy(check_images=False))


# --- text decoding --------------------------------------------------------------------
@pytest.mark.parametrize(
    "data,expect_note",
    [
        ("café bird\n".encode("utf-8"), None),
        ("café bird\n".encode("utf-8-sig"), "UTF-8 with BOM"),
        ("café bird\n".encode("utf-16"), "UTF-16"),
        ("café bird\n".encode("utf-16-be"), "UTF-16-BE without BOM"),
        ("café bird\n".encode("utf-16-le"), "UTF-16-LE without BOM"),
    ],
)
def test_decode_text_accepts_utf8_boms_and_utf16(data, expect_note):
    text, note = decode_text(data)
    assert text == "café bird\n"
    if expect_note is None:
        assert note is None
    else:
        assert expect_note in note


def test_decode_text_is_strict_and_names_line_and_column():
    data = "line one\nun café\n".encode("utf-8")[:-1] + "\nthird: brûlé\n".encode("latin-1")
    with pytest.raises(DataError, match=r"doc.json:3:10: invalid UTF-8 \(byte 0xfb at line 3, column 10\).*iconv"):
        decode_text(data, "doc.json")


def test_one_bad_byte_costs_one_line_not_the_file():
    # the old fallback re-decoded the whole file as cp1252: "café" became "cafÃ©" everywhere
    data = "un café\n".encode("utf-8") + b"caf\xe9 au lait\r\n" + "naïve résumé\n".encode("utf-8")
    decoded = decode_lines(data)
    assert decoded.lines == [(1, "un café"), (3, "naïve résumé")]
    assert [(b.line, b.column, b.offset, b.bad) for b in decoded.bad] == [(2, 4, 12, b"\xe9")]
    assert decoded.note is None


def test_a_cp1252_file_is_reported_line_by_line_not_re_decoded(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_bytes("plain ascii line\n“quoted” words\nun café\nanother ascii line\n".encode("cp1252"))
    report = DataReport("t", str(tmp_path), "train")
    lines = read_lines(path, report, SKIP)
    assert lines == [(1, "plain ascii line"), (4, "another ascii line")]  # valid UTF-8 lines, unchanged
    assert [(p.line, p.action) for p in report.problems] == [(2, "skipped"), (3, "skipped")]
    assert all("invalid UTF-8" in p.reason and "iconv -f cp1252 -t utf-8" in p.reason for p in report.problems)
    assert "0x93" in report.problems[0].reason and "column 1" in report.problems[0].reason
    assert report.skipped == 2 and report.converted == 0
    with pytest.raises(DataError, match=r"captions.txt:2: invalid UTF-8"):
        read_lines(path, DataReport("t", "", ""), ERROR)


def test_utf16_bom_with_garbage_is_a_clear_error():
    with pytest.raises(DataError, match=r"x.txt: starts with a UTF-16"):
        decode_lines(b"\xff\xfea\x00b", "x.txt")


# --- CUB with every kind of bad item ---------------------------------------------------
def _bad_cub(root: Path):
    a, b = CUB_CLASSES[0], CUB_CLASSES[1]
    keys = {
        "gray": f"{a}/{a[4:]}_0000_1",
        "cmyk": f"{a}/{a[4:]}_0001_2",
        "trunc": f"{a}/{a[4:]}_0002_3",
        "notimg": f"{b}/{b[4:]}_0000_4",
        "missing": f"{b}/{b[4:]}_0001_5",
        "ok": f"{b}/{b[4:]}_0002_6",
    }
    caps = {
        keys["gray"]: "first caption\n   \nthird caption\n".encode("utf-8"),  # whitespace line 2
        keys["cmyk"]: "un oiseau brûlé\nzwei\n".encode("latin-1"),
        keys["ok"]: "a bird with a résumé\nsecond one\n".encode("utf-16"),
        keys["notimg"]: b"fine caption\n",
    }
    build_cub(
        root,
        image_kinds={keys["gray"]: "gray", keys["cmyk"]: "cmyk", keys["trunc"]: "truncated", keys["notimg"]: "notimage"},
        caption_files=caps,
    )
    (root / "CUB_200_2011" / "images" / f"{keys['missing']}.jpg").unlink()
    # an image whose captions are all empty
    c = CUB_CLASSES[2]
    (root / "text" / c / f"{c[4:]}_0000_7.txt").write_bytes(b"\n  \n\t\n")
    return keys


def test_cub_bad_items_skip_policy_counts_everything(tmp_path):
    keys = _bad_cub(tmp_path)
    train = load_cub(tmp_path, "train", SKIP)
    rep = train.report
    got = {s.key for s in train.samples}
    assert got == {keys["gray"], keys["cmyk"], keys["ok"]}
    by_file = {}
    for p in rep.problems:
        by_file.setdefault(Path(p.file).name, []).append(p)
    # converted: grayscale and CMYK images, the UTF-16 caption file
    assert rep.converted == 3
    assert any("grayscale" in p.reason for p in by_file[Path(keys["gray"]).name + ".jpg"])
    assert any("CMYK" in p.reason for p in by_file[Path(keys["cmyk"]).name + ".jpg"])
    assert any("UTF-16" in p.reason for p in by_file[Path(keys["ok"]).name + ".txt"])
    # the latin-1 caption file: its non-UTF-8 line is skipped, its ASCII line kept
    latin = by_file[Path(keys["cmyk"]).name + ".txt"]
    assert [(p.line, p.action) for p in latin] == [(1, "skipped")] and "invalid UTF-8" in latin[0].reason
    # skipped: whitespace caption (with its line), the latin-1 line, truncated, not-an-image, missing
    blank = [p for p in by_file[Path(keys["gray"]).name + ".txt"] if p.action == "skipped"]
    assert [(b.line, b.reason) for b in blank] == [(2, "empty or whitespace-only caption")]
    assert rep.skipped == 5
    # nothing dropped without a skipped problem naming its image or caption file
    for key in set(keys.values()) - got:
        stem = Path(key).name
        assert any(stem in p.file and p.action == "skipped" for p in rep.problems), key
    # captions are decoded correctly and blank ones removed
    s = {x.key: x for x in train.samples}
    assert s[keys["gray"]].captions == ["first caption", "third caption"]
    assert s[keys["cmyk"]].captions == ["zwei"]
    assert s[keys["ok"]].captions[0] == "a bird with a résumé"
    assert rep.images == 3 and rep.captions == 5


def test_cub_all_empty_captions_is_a_skipped_item(tmp_path):
    _bad_cub(tmp_path)
    test = load_cub(tmp_path, "test", SKIP)
    c = CUB_CLASSES[2]
    assert f"{c}/{c[4:]}_0000_7" not in {s.key for s in test.samples}
    assert any("no non-empty caption" in p.reason and p.file.endswith("_0000_7.txt") for p in test.report.problems)
    assert sum(p.reason == "empty or whitespace-only caption" for p in test.report.problems) == 3


def test_cub_error_policy_names_file_and_line(tmp_path):
    keys = _bad_cub(tmp_path)
    with pytest.raises(DataError, match=rf"{Path(keys['gray']).name}\.txt:2: empty or whitespace-only caption"):
        load_cub(tmp_path, "train", ERROR)


def test_cub_error_policy_on_truncated_image(tmp_path):
    a = CUB_CLASSES[0]
    key = f"{a}/{a[4:]}_0001_2"
    build_cub(tmp_path, image_kinds={key: "truncated"})
    with pytest.raises(DataError, match=rf"{Path(key).name}\.jpg: cannot decode image"):
        load_cub(tmp_path, "train", ERROR)
    # without check_images the truncation is not seen at load time (the Dataset handles it)
    assert len(load_cub(tmp_path, "train", BadInputPolicy(on_error="error"))) == 6


# --- folder: unknown labels, broken lines, CSV encodings -------------------------------
def test_folder_unknown_label_with_classes_json(tmp_path):
    rows = build_folder(tmp_path, n=4, labels="str")
    (tmp_path / "classes.json").write_text(json.dumps(["apple", "mango"]))  # no "zebra"
    split = load_folder(tmp_path, "train", SKIP)
    zebra_lines = [i + 1 for i, r in enumerate(rows) if r["label"] == "zebra"]
    problems = [p for p in split.report.problems if "unknown label" in p.reason]
    assert [p.line for p in problems] == zebra_lines
    assert all(p.file.endswith("train.jsonl") and "classes.json" in p.reason for p in problems)
    assert len(split) == 4 - len(zebra_lines) and split.report.skipped == len(zebra_lines)
    with pytest.raises(DataError, match=rf"train.jsonl:{zebra_lines[0]}: unknown label 'zebra'"):
        load_folder(tmp_path, "train", ERROR)


def test_folder_int_label_out_of_range_is_unknown(tmp_path):
    build_folder(tmp_path, n=3, labels="int")
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b"]))  # ids 0, 1 only
    split = load_folder(tmp_path, "train", SKIP)
    assert len(split) == 2
    assert [p.line for p in split.report.problems] == [3]


def test_folder_broken_lines_missing_images_and_empty_captions(tmp_path):
    write_image(tmp_path / "a.png", "png")
    write_image(tmp_path / "bad.png", "truncated")
    rows = [
        {"image": "a.png", "caption": "  "},  # line 1: only an empty caption
        {"image": "a.png", "captions": ["ok one", "", "ok two"]},  # line 2: one empty caption
        {"image": "missing.png", "caption": "where is it"},  # line 4 (after the broken line)
        {"caption": "no image"},  # line 5
        {"image": "bad.png", "caption": "a broken file"},  # line 6
    ]
    write_jsonl(tmp_path / "train.jsonl", rows, raw_lines={2: "{not json"})
    split = load_folder(tmp_path, "train", SKIP)
    assert [s.captions for s in split.samples] == [["ok one", "ok two"]]
    where = sorted((p.line, p.reason.split(" (")[0]) for p in split.report.problems)
    assert [w[0] for w in where] == [1, 1, 2, 3, 4, 5, 6]
    assert split.report.skipped == 7  # 2 empty captions, 1 caption-less row, bad JSON, missing, no image, truncated
    # the file is parsed before rows are checked: the broken line is the first error
    with pytest.raises(DataError, match=r"train.jsonl:3: invalid JSON"):
        load_folder(tmp_path, "train", ERROR)
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: empty or whitespace-only caption"):
        load_folder(tmp_path, "train", ERROR)


def test_folder_csv_latin1_pipes_and_merged_rows(tmp_path):
    write_image(tmp_path / "x.png", "png")
    write_image(tmp_path / "y.png", "png")
    text = "image,caption,label\nx.png,un café|a second one,cat\ny.png,plain,dog\nx.png,third for x,cat\n"
    (tmp_path / "train.csv").write_bytes(text.encode("latin-1"))
    split = load_folder(tmp_path, "train", SKIP)
    assert split.class_names == ["cat", "dog"]
    s = {x.key: x for x in split.samples}
    assert s["x.png"].captions == ["third for x"]  # line 2 is not UTF-8: skipped, not re-decoded
    assert s["x.png"].labels == (0,) and s["y.png"].labels == (1,)
    (p,) = split.report.problems
    assert (p.line, p.action, split.report.converted) == (2, "skipped", 0)
    assert "invalid UTF-8" in p.reason and "0xe9" in p.reason and "iconv" in p.reason
    # the same rows in UTF-8 (with pipes and a merged row) keep every caption
    (tmp_path / "train.csv").write_text(text, encoding="utf-8")
    s = {x.key: x for x in load_folder(tmp_path, "train", SKIP).samples}
    assert s["x.png"].captions == ["un café", "a second one", "third for x"]


def test_folder_jsonl_bad_byte_skips_that_row_only(tmp_path):
    for n in "abc":
        write_image(tmp_path / f"{n}.png", "png")
    lines = [json.dumps({"image": f"{n}.png", "caption": f"un café {n}"}, ensure_ascii=False).encode("utf-8") for n in "abc"]
    lines[1] = lines[1].replace("é".encode("utf-8"), b"\xe9")
    (tmp_path / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    split = load_folder(tmp_path, "train", SKIP)
    assert [s.captions for s in split.samples] == [["un café a"], ["un café c"]]
    assert [(p.line, p.action) for p in split.report.problems] == [(2, "skipped")]


def test_csv_header_that_is_not_utf8_is_an_error(tmp_path):
    (tmp_path / "train.csv").write_bytes(b"im\xe4ge,caption\na.png,x\n")
    with pytest.raises(DataError, match=r"train.csv:1: the header line is not valid UTF-8"):
        load_folder(tmp_path, "train", SKIP)


# --- COCO ------------------------------------------------------------------------------
def test_coco_empty_captions_and_missing_image(tmp_path):
    build_coco(tmp_path, n_train=3, n_val=1)
    cap_path = tmp_path / "annotations" / "captions_train2014.json"
    caps = json.loads(cap_path.read_text())
    first = caps["images"][0]["id"]
    for a in caps["annotations"]:
        if a["image_id"] == first:
            a["caption"] = " \n "
    cap_path.write_text(json.dumps(caps))
    (tmp_path / "train2014" / caps["images"][1]["file_name"]).unlink()
    split = load_coco(tmp_path, "train", SKIP)
    assert [s.key for s in split.samples] == [caps["images"][2]["file_name"]]
    reasons = [p.reason for p in split.report.problems]
    assert reasons.count("empty or whitespace-only caption") == 5
    assert any("no non-empty caption" in r for r in reasons)
    assert any(p.file.endswith(caps["images"][1]["file_name"]) and "not found" in p.reason for p in split.report.problems)
    with pytest.raises(DataError, match="captions_train2014.json"):
        load_coco(tmp_path, "train", ERROR)
