"""Tiny data sets in the published layouts (CUB+AttnGAN, COCO 2014, Karpathy, folder,
synthetic world), and odd image files, built in a temporary folder for the data tests."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image


def rgb_array(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_image(path: Path, kind: str = "rgb", size=(32, 24), seed: int = 0) -> Path:
    """Write one image file of a given kind.

    kinds: rgb (JPEG), png, gray (JPEG, mode L), cmyk (JPEG), rgba (PNG, half transparent),
    palette (PNG), palette_t (PNG with a transparent index), 16bit (PNG, I;16 ramp),
    truncated (a JPEG cut in half), notimage (text), empty (0 bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    arr = rgb_array(h, w, seed)
    if kind in ("rgb", "png"):
        Image.fromarray(arr).save(path, format="PNG" if kind == "png" else "JPEG", quality=90)
    elif kind == "gray":
        Image.fromarray(arr[..., 0]).save(path, format="JPEG")
    elif kind == "cmyk":
        Image.fromarray(arr).convert("CMYK").save(path, format="JPEG")
    elif kind == "rgba":
        rgba = np.dstack([arr, np.full((h, w), 255, np.uint8)])
        rgba[:, : w // 2, 3] = 0  # left half fully transparent
        Image.fromarray(rgba).save(path, format="PNG")
    elif kind == "palette":
        Image.fromarray(arr).convert("P", palette=Image.ADAPTIVE, colors=16).save(path, format="PNG")
    elif kind == "palette_t":
        img = Image.fromarray(arr).convert("P", palette=Image.ADAPTIVE, colors=16)
        img.save(path, format="PNG", transparency=0)
    elif kind == "16bit":
        ramp = np.linspace(0, 65535, w, dtype=np.float64).round().astype(np.uint16)
        Image.fromarray(np.tile(ramp, (h, 1))).save(path, format="PNG")
    elif kind == "truncated":
        full = path.with_suffix(".full.jpg")
        Image.fromarray(arr).save(full, format="JPEG", quality=95)
        data = full.read_bytes()
        full.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "notimage":
        path.write_text("this is not an image\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(kind)
    return path


def py2_pickle(path: Path, obj) -> None:
    """Write ``obj`` as a protocol-2 pickle; ``bytes`` entries mimic Python 2 ``str``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def py2_str_pickle_bytes(strings: List[str]) -> bytes:
    """A protocol-2 pickle of a list of Python 2 ``str`` (SHORT_BINSTRING opcodes), byte for
    byte what AttnGAN's Python 2 code wrote; Python 3 needs ``encoding="latin1"`` for it."""
    out = bytearray(b"\x80\x02](")  # PROTO 2, EMPTY_LIST, MARK
    for s in strings:
        raw = s.encode("latin-1")
        assert len(raw) < 256
        out += b"U" + bytes([len(raw)]) + raw  # SHORT_BINSTRING
    return bytes(out + b"e.")  # APPENDS, STOP


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani"]


def build_cub(
    root: Path,
    per_class: int = 3,
    image_kinds: Optional[Dict[str, str]] = None,
    caption_files: Optional[Dict[str, bytes]] = None,
    train_classes=(0, 1),
    captions_per_image: int = 3,
    classes_txt: bool = True,
) -> Dict[str, List[str]]:
    """CUB_200_2011 + text/ + train|test pickles. Returns {"train": keys, "test": keys}.

    ``image_kinds`` maps a key ("<class>/<img>") to a :func:`write_image` kind;
    ``caption_files`` maps a key to the raw bytes of its caption file.
    """
    image_kinds = image_kinds or {}
    caption_files = caption_files or {}
    cub = root / "CUB_200_2011"
    images_txt, boxes_txt, split_keys = [], [], {"train": [], "test": []}
    img_id = 0
    for c, cls in enumerate(CUB_CLASSES):
        for j in range(per_class):
            img_id += 1
            key = f"{cls}/{cls.split('.', 1)[1]}_{j:04d}_{img_id}"
            write_image(cub / "images" / f"{key}.jpg", image_kinds.get(key, "rgb"), size=(40, 30), seed=img_id)
            images_txt.append(f"{img_id} {key}.jpg")
            boxes_txt.append(f"{img_id} 10.0 5.0 12.0 8.0")
            text_path = root / "text" / f"{key}.txt"
            text_path.parent.mkdir(parents=True, exist_ok=True)
            default = "\n".join(f"a bird of class {c} picture {j} caption {k}" for k in range(captions_per_image)) + "\n"
            text_path.write_bytes(caption_files.get(key, default.encode("utf-8")))
            split_keys["train" if c in train_classes else "test"].append(key)
    (cub / "images.txt").write_text("\n".join(images_txt) + "\n")
    (cub / "bounding_boxes.txt").write_text("\n".join(boxes_txt) + "\n")
    if classes_txt:
        (cub / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(CUB_CLASSES)))
    for split, keys in split_keys.items():
        py2_pickle(root / split / "filenames.pickle", [k.encode("latin-1") for k in keys])
        py2_pickle(root / split / "class_info.pickle", [int(k.split(".", 1)[0]) for k in keys])
    return split_keys


COCO_CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def build_coco(root: Path, n_train: int = 4, n_val: int = 3, instances: bool = True) -> None:
    """annotations/captions_*2014.json, instances_*2014.json, train2014/, val2014/."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    next_id = 100
    for part, n in (("train2014", n_train), ("val2014", n_val)):
        images, caps, inst = [], [], []
        for i in range(n):
            next_id += 1
            name = f"COCO_{part}_{next_id:012d}.jpg"
            write_image(root / part / name, "rgb", size=(32, 24), seed=next_id)
            images.append({"id": next_id, "file_name": name, "width": 32, "height": 24})
            for k in range(5):
                caps.append({"id": next_id * 10 + k, "image_id": next_id, "caption": f"photo {next_id} caption {k}"})
            # image 0 has no instances; others: dog (18) and person (1), deliberately out of order
            if i > 0:
                inst.append({"id": len(inst), "image_id": next_id, "category_id": 18})
                inst.append({"id": len(inst), "image_id": next_id, "category_id": 1})
                inst.append({"id": len(inst), "image_id": next_id, "category_id": 18})
        (root / "annotations" / f"captions_{part}.json").write_text(json.dumps({"images": images, "annotations": caps}))
        if instances:
            (root / "annotations" / f"instances_{part}.json").write_text(
                json.dumps({"images": images, "annotations": inst, "categories": COCO_CATEGORIES})
            )


def build_karpathy(root: Path, coco: bool = True) -> Dict[str, str]:
    """dataset_coco.json with images under root/<filepath>/ (or dataset_flickr30k.json with root/images/)."""
    splits = ["train", "restval", "val", "test", "train"]
    images = []
    for i, split in enumerate(splits):
        name = f"img_{i}.jpg"
        entry = {
            "filename": name,
            "split": split,
            "sentences": [{"raw": f"Sentence {k} about image {i}.", "tokens": ["sentence"]} for k in range(5)],
            "imgid": i,
        }
        if coco:
            entry["filepath"] = "val2014" if split != "train" else "train2014"
            write_image(root / entry["filepath"] / name, "rgb", seed=i)
        else:
            write_image(root / "images" / name, "rgb", seed=i)
        images.append(entry)
    name = "dataset_coco.json" if coco else "dataset_flickr30k.json"
    (root / name).write_text(json.dumps({"images": images, "dataset": "coco" if coco else "flickr30k"}))
    return {e["filename"]: e["split"] for e in images}


def write_jsonl(path: Path, rows: List[dict], raw_lines: Optional[Dict[int, str]] = None) -> None:
    """Write rows; ``raw_lines`` inserts literal lines (0-based position) for broken-line tests."""
    lines = [json.dumps(r) for r in rows]
    for pos, text in sorted((raw_lines or {}).items()):
        lines.insert(pos, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_folder(root: Path, n: int = 4, labels: str = "str", split: str = "train") -> List[dict]:
    """root/<split>.jsonl with images under root/img/ and string or int labels."""
    rows = []
    names = ["zebra", "apple", "mango"]
    for i in range(n):
        rel = f"img/{split}_{i}.png"
        write_image(root / rel, "png", seed=i)
        row = {"image": rel, "captions": [f"picture {i} of a {names[i % 3]}", f"another view {i}"]}
        row["label"] = names[i % 3] if labels == "str" else i % 3
        rows.append(row)
    write_jsonl(root / f"{split}.jsonl", rows)
    return rows


def build_synthetic(root: Path, multi: bool = False) -> None:
    """What `t2i data synth` writes: images/<split>/<key>.png, <split>.jsonl, classes.json, world.json."""
    classes = ["red_finch", "blue_jay", "green_parrot"]
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(classes))
    (root / "world.json").write_text(json.dumps({"name": "scenes" if multi else "birds", "seed": 0, "multi_label": multi}))
    for split, n in (("train", 4), ("test", 2)):
        rows = []
        for i in range(n):
            key = f"{split}_{i:05d}"
            write_image(root / "images" / split / f"{key}.png", "png", size=(16, 16), seed=i)
            labs = [i % 3] if not multi else sorted({i % 3, (i + 1) % 3})
            rows.append(
                {
                    "image": f"images/{split}/{key}.png",
                    "captions": [f"a {classes[labs[0]]} number {k}" for k in range(3)],
                    "labels": labs,
                    "label_names": [classes[c] for c in labs],
                    "attributes": {"color": "red", "index": i},
                    "caption_attributes": [{"k": k} for k in range(3)],
                }
            )
        write_jsonl(root / f"{split}.jsonl", rows)
