"""The ``scenes`` world: 1-4 objects from 24 categories, multi-label, 5 captions (COCO-like).

Each object has a category, a colour and a size class; spatial relations (left of,
right of, above, below) hold between objects whose centres are clearly apart. Captions
mention a subset of the objects, some with colour/size, and sometimes one relation.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

from PIL import Image, ImageDraw

from ._common import (
    caption_set,
    RGB,
    SUPERSAMPLE,
    TEXTURES,
    Rng,
    article,
    draw_background,
    draw_clutter,
    finish,
    jitter_colour,
    join_list,
    paste_layer,
    random_muted_colour,
    round_floats,
)
from .icons import ICONS

#: The object categories (index = label id).
SCENE_CATEGORIES: List[str] = list(ICONS)
SCENE_COLOUR_RGB: Dict[str, RGB] = {
    "red": (205, 40, 36),
    "orange": (238, 130, 28),
    "yellow": (240, 212, 44),
    "green": (60, 150, 56),
    "blue": (44, 88, 205),
    "purple": (122, 56, 170),
    "pink": (240, 140, 180),
    "brown": (120, 78, 44),
    "black": (30, 30, 30),
    "white": (244, 244, 240),
    "grey": (130, 130, 130),
}
SCENE_COLOURS: List[str] = list(SCENE_COLOUR_RGB)
SCENE_SIZES: List[str] = ["small", "medium", "large"]
#: side of an object's square, as a fraction of the image side (gaps keep classes apart)
SIZE_RANGES: Dict[str, Tuple[float, float]] = {"small": (0.17, 0.22), "medium": (0.27, 0.32), "large": (0.38, 0.45)}
RELATIONS: List[str] = ["left of", "right of", "above", "below"]
INVERSE_RELATION: Dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
#: centres must be this far apart (fraction of the image side) for a relation to hold
RELATION_MARGIN = 0.1

#: Words a caption may use for each category, size and relation.
SCENE_NOUNS: Dict[str, List[str]] = {c: [c] for c in SCENE_CATEGORIES}
SCENE_NOUNS.update({
    "ball": ["ball", "sphere"], "box": ["box", "cube", "crate"], "moon": ["moon", "crescent moon"],
    "tree": ["tree", "pine tree"], "house": ["house", "hut", "cottage"], "car": ["car", "automobile"],
    "cup": ["cup", "mug"], "flower": ["flower", "blossom"], "cross": ["cross", "plus sign"],
    "ring": ["ring", "donut"], "boat": ["boat", "sailboat"], "hat": ["hat", "top hat"],
})
SIZE_WORDS: Dict[str, List[str]] = {"small": ["small", "little", "tiny"], "medium": ["medium-sized", "mid-sized"],
                                    "large": ["large", "big"]}
RELATION_WORDS: Dict[str, List[str]] = {
    "left of": ["to the left of", "left of", "on the left of"],
    "right of": ["to the right of", "right of", "on the right of"],
    "above": ["above", "over"],
    "below": ["below", "under", "beneath"],
}


def relations_between(objects: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every relation that clearly holds, for every ordered pair of objects (indices)."""
    out = []
    for i, a in enumerate(objects):
        for j, b in enumerate(objects):
            if i == j:
                continue
            dx, dy = b["x"] - a["x"], b["y"] - a["y"]
            if dx > RELATION_MARGIN:
                out.append({"subject": i, "relation": "left of", "object": j})
            if dx < -RELATION_MARGIN:
                out.append({"subject": i, "relation": "right of", "object": j})
            if dy > RELATION_MARGIN:  # image y grows downwards
                out.append({"subject": i, "relation": "above", "object": j})
            if dy < -RELATION_MARGIN:
                out.append({"subject": i, "relation": "below", "object": j})
    return out


def _place(rng: Rng, placed: List[Dict[str, Any]], size_class: str) -> Dict[str, float] | None:
    """A position and scale for a new object that does not cover the placed ones much."""
    for _ in range(40):
        s = rng.uniform(*SIZE_RANGES[size_class])
        x, y = rng.uniform(s / 2, 1 - s / 2), rng.uniform(s / 2, 1 - s / 2)
        if all(math.hypot(x - o["x"], y - o["y"]) >= 0.45 * (s + o["scale"]) for o in placed):
            return {"x": x, "y": y, "scale": s}
    return None


def sample_scene(rng: Rng, img_seed: int) -> Dict[str, Any]:
    """Full ground truth of one scene: objects (category, colour, size, placement) and relations."""
    n = rng.weighted([1, 2, 3, 4], [0.2, 0.3, 0.3, 0.2])
    objects: List[Dict[str, Any]] = []
    for category in rng.sample(SCENE_CATEGORIES, n):
        size_class = rng.choice(SCENE_SIZES)
        where = None
        while where is None:  # shrink the object until it fits; drop it if even small fails
            where = _place(rng, objects, size_class)
            if where is None:
                k = SCENE_SIZES.index(size_class)
                if k == 0:
                    break
                size_class = SCENE_SIZES[k - 1]
        if where is None:
            continue
        objects.append({
            "category": category,
            "colour": rng.choice(SCENE_COLOURS),
            "size": size_class,
            "x": round_floats(where["x"]),
            "y": round_floats(where["y"]),
            "scale": round_floats(where["scale"]),
            "rotation": round_floats(rng.uniform(-15, 15), 2),
        })
    return {
        "objects": objects,
        "relations": relations_between(objects),
        "background": {"texture": rng.choice(TEXTURES), "colour": list(random_muted_colour(rng))},
        "clutter": rng.randint(0, 10),
        "noise": round_floats(rng.uniform(0.0, 10.0), 2),
        "image_seed": img_seed,
    }


# ----------------------------------------------------------------------------- captions


def _noun_phrase(rng: Rng, obj: Dict[str, Any]) -> Tuple[str, Dict[str, str]]:
    mention = {"category": obj["category"]}
    words = []
    if rng.chance(0.3):
        words.append(rng.choice(SIZE_WORDS[obj["size"]]))
        mention["size"] = obj["size"]
    if rng.chance(0.65):
        words.append(obj["colour"])
        mention["colour"] = obj["colour"]
    words.append(rng.choice(SCENE_NOUNS[obj["category"]]))
    return f"{article(words[0])} {' '.join(words)}", mention


def scene_caption(rng: Rng, gt: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """One caption and what it mentions: ``{"objects": [...], "relations": [...]}``.

    Relation indices refer to the caption's own ``objects`` list (its order of mention).
    """
    objs = gt["objects"]
    m = rng.randint(1, len(objs))
    chosen = rng.sample(range(len(objs)), m)
    relation = None
    if m >= 2 and rng.chance(0.6):
        pairs = [r for r in gt["relations"] if r["subject"] in chosen and r["object"] in chosen]
        if pairs:
            relation = rng.choice(pairs)
            rest = [i for i in chosen if i not in (relation["subject"], relation["object"])]
            chosen = [relation["subject"], relation["object"]] + rest
    phrases, mentions = zip(*[_noun_phrase(rng, objs[i]) for i in chosen])
    phrases = list(phrases)
    rels = []
    if relation is not None:
        rel_words = rng.choice(RELATION_WORDS[relation["relation"]])
        a, b = phrases[0], phrases[1]
        form = rng.randint(0, 2)
        if form == 0:
            text = f"{a} is {rel_words} {b}"
        elif form == 1:
            text = f"there is {a} {rel_words} {b}"
        else:
            text = f"{a} {rel_words} {b}"
        if len(phrases) > 2:
            text += f", and there is also {join_list(phrases[2:], rng)}"
        rels.append({"subject": 0, "relation": relation["relation"], "object": 1})
    else:
        listed = join_list(phrases, rng)
        form = rng.randint(0, 4)
        text = [listed, f"there is {listed} in the picture", f"a picture of {listed}",
                f"an image showing {listed}", f"a scene with {listed}"][form]
    return " ".join(text.split()) + ".", {"objects": list(mentions), "relations": rels}


def scene_captions(gt: Dict[str, Any], n: int = 5) -> Tuple[List[str], List[Dict[str, Any]]]:
    """``n`` captions of one scene and, aligned, what each one mentions."""
    return caption_set("scene-captions", gt, n, scene_caption)


# ----------------------------------------------------------------------------- rendering


def render_scene(gt: Dict[str, Any], size: int) -> Image.Image:
    """Render the scene described by ``gt`` at ``size`` x ``size`` pixels (deterministic)."""
    canvas = size * SUPERSAMPLE
    rng = Rng("scene-render", gt["image_seed"])
    img = draw_background(canvas, gt["background"]["texture"], gt["background"]["colour"], rng).convert("RGBA")
    draw_clutter(img, rng, gt["clutter"], max_frac=0.03)
    for obj in gt["objects"]:
        side = max(8, int(obj["scale"] * canvas))
        layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        ICONS[obj["category"]](ImageDraw.Draw(layer), side, jitter_colour(SCENE_COLOUR_RGB[obj["colour"]], rng))
        paste_layer(img, layer, obj["x"] * canvas, obj["y"] * canvas, obj["rotation"])
    return finish(img, size, gt["noise"], gt["image_seed"])
