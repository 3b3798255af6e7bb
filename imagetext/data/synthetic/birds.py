"""The ``birds`` world: one bird per image, 60 fine-grained species, 10 captions each (CUB-like).

A species is a fixed combination of five attributes (body shape, body colour, wing
colour, wing pattern, accent). Species come in clusters that differ in one attribute,
and the same colour schemes recur across body shapes, so species are confusable.
Per image the pose, facing, position, scale, rotation, background, clutter and noise
vary. Captions mention a random subset of the attributes, as real captions do.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw

from ._common import (
    caption_set,
    RGB,
    SUPERSAMPLE,
    TEXTURES,
    Rng,
    article,
    contrast_colour,
    draw_background,
    draw_clutter,
    finish,
    jitter_colour,
    join_list,
    paste_layer,
    round_floats,
    shade,
)

BIRD_COLOURS: Dict[str, RGB] = {
    "red": (200, 38, 34),
    "orange": (236, 128, 30),
    "yellow": (238, 206, 44),
    "green": (66, 148, 58),
    "blue": (48, 92, 200),
    "brown": (122, 82, 48),
    "black": (34, 34, 34),
    "white": (240, 240, 234),
    "grey": (132, 132, 132),
}

#: The attribute vocabulary: attribute -> possible values. Every species fixes all five.
BIRD_ATTRIBUTES: Dict[str, List[str]] = {
    "body_shape": ["round", "slender", "long-tailed", "fan-tailed"],
    "body_colour": list(BIRD_COLOURS),
    "wing_colour": list(BIRD_COLOURS),
    "pattern": ["plain", "striped", "spotted", "barred"],
    "accent": ["red cap", "black mask", "white eyebrow", "yellow beak", "crest"],
}
#: Per-image attributes (not part of the species) that captions may also mention.
BIRD_POSES = ["perched", "flying"]
BIRD_FACINGS = ["left", "right"]
#: Named background colours (jittered per image; the texture varies independently).
BIRD_BACKGROUNDS: Dict[str, RGB] = {
    "blue": (150, 190, 225), "green": (156, 196, 134), "dark green": (62, 100, 60), "beige": (222, 206, 172),
    "grey": (160, 160, 158), "brown": (140, 110, 80), "white": (236, 236, 230), "purple": (150, 128, 172),
}
#: Caption keys beyond the species attributes, with the chance that a caption mentions each.
BIRD_IMAGE_KEYS: Dict[str, float] = {"pose": 0.3, "facing": 0.2, "background_colour": 0.35}
#: Every key a bird caption can mention (``caption_attributes``) -> its possible values.
BIRD_MENTION_VALUES: Dict[str, List[str]] = {
    **BIRD_ATTRIBUTES, "pose": BIRD_POSES, "facing": BIRD_FACINGS, "background_colour": list(BIRD_BACKGROUNDS),
}
#: Words a caption may use for each colour.
BIRD_COLOUR_WORDS: Dict[str, List[str]] = {c: [c] for c in BIRD_COLOURS}
BIRD_COLOUR_WORDS["grey"] = ["grey", "gray"]

_GENUS = {"round": "Finch", "slender": "Warbler", "long-tailed": "Flycatcher", "fan-tailed": "Fantail"}
_PREFIXES = ["Alder", "Birch", "Cedar", "Dune", "Fern", "Glen", "Heath", "Marsh", "Moor", "Reed",
             "Ridge", "Sedge", "Thorn", "Vale", "Willow"]
_SPECIES_PER_SHAPE = 15


def _make_species_table() -> Dict[str, Dict[str, str]]:
    """Build the fixed species table (independent of any user seed).

    A shared pool of colour schemes is reused by every body shape (so some species
    differ only in shape); each shape takes 5 schemes and derives 2 variants from each
    by changing exactly one attribute (so clusters of species differ in one attribute).
    New values are drawn among the least-used ones so every value occurs.
    """
    rng = Rng("imagetext-birds-species", 4)
    keys = ("body_colour", "wing_colour", "pattern", "accent")
    used: Dict[str, Dict[str, int]] = {k: {v: 0 for v in BIRD_ATTRIBUTES[k]} for k in keys}

    def rare(key: str, exclude: Sequence[str] = ()) -> str:
        free = {v: c for v, c in used[key].items() if v not in exclude}
        low = min(free.values())
        return rng.choice([v for v, c in free.items() if c == low])

    def count(combo: Sequence[str]) -> None:
        for k, v in zip(keys, combo):
            used[k][v] += 1

    pool: List[Tuple[str, ...]] = []
    while len(pool) < 12:
        body = rare("body_colour")
        scheme = (body, rare("wing_colour", [body]), rare("pattern"), rare("accent"))
        if scheme not in pool:
            pool.append(scheme)
            count(scheme)
    table: Dict[str, Dict[str, str]] = {}
    for si, shape in enumerate(BIRD_ATTRIBUTES["body_shape"]):
        combos: List[Tuple[str, ...]] = []
        for base in rng.sample(pool, 5):
            combos.append(base)
            count(base)
            made = 0
            while made < 2:
                k = rng.randint(0, 3)
                new = list(base)
                new[k] = rare(keys[k], [base[k]] + ([base[1 - k]] if k < 2 else []))
                t = tuple(new)
                if t not in combos:
                    combos.append(t)
                    count(t)
                    made += 1
        for j, c in enumerate(combos):
            name = f"{_PREFIXES[(j + 4 * si) % len(_PREFIXES)]} {_GENUS[shape]}"
            table[name] = {"body_shape": shape, **dict(zip(keys, c))}
    return table


#: species name -> its attribute values (index in this order = label id).
SPECIES: Dict[str, Dict[str, str]] = _make_species_table()
SPECIES_NAMES: List[str] = list(SPECIES)


def class_disjoint_split() -> Tuple[List[int], List[int]]:
    """The fixed class-disjoint split (like CUB's 150/50): ids of train and test species.

    Every 4th species is held out, so each body shape has test species and every test
    species has train species of the same colour cluster.
    """
    ids = list(range(len(SPECIES_NAMES)))
    return [i for i in ids if i % 4 != 3], [i for i in ids if i % 4 == 3]


# ----------------------------------------------------------------------------- sampling

def sample_bird(rng: Rng, species_id: int, img_seed: int) -> Dict[str, Any]:
    """Full ground truth of one image (species attributes plus per-image variation)."""
    name = SPECIES_NAMES[species_id]
    bg = rng.choice(list(BIRD_BACKGROUNDS))
    return {
        "species": name,
        "species_id": species_id,
        **SPECIES[name],
        "pose": rng.choice(BIRD_POSES),
        "facing": rng.choice(BIRD_FACINGS),
        "background_colour": bg,
        "x": round_floats(rng.uniform(0.4, 0.6)),
        "y": round_floats(rng.uniform(0.4, 0.6)),
        "scale": round_floats(rng.uniform(0.6, 0.95)),
        "rotation": round_floats(rng.uniform(-25, 25), 2),
        "background": {"texture": rng.choice(TEXTURES),
                       "colour": list(jitter_colour(BIRD_BACKGROUNDS[bg], rng, 0.03, 0.15, 0.1))},
        "clutter": rng.randint(0, 8),
        "noise": round_floats(rng.uniform(0.0, 10.0), 2),
        "image_seed": img_seed,
    }


# ----------------------------------------------------------------------------- captions

_BODY_NOUN = ["body", "belly", "breast", "chest"]
_PATTERN_NP = {
    "striped": ["striped wings", "stripes on its wings", "wings with stripes"],
    "spotted": ["spotted wings", "spots on its wings", "wings with spots"],
    "barred": ["barred wings", "wing bars", "bars across its wings"],
    "plain": ["plain wings", "unmarked wings", "wings without markings"],
}
_WING_PATTERN_NP = {
    "striped": ["{c} striped wings", "{c} wings with stripes"],
    "spotted": ["{c} spotted wings", "{c} wings with spots"],
    "barred": ["{c} barred wings", "{c} wings with bars"],
    "plain": ["plain {c} wings", "solid {c} wings"],
}
_WING_PATTERN_CLAUSE = {
    "striped": ["its wings are {c} and striped", "the wings are {c} with stripes"],
    "spotted": ["its wings are {c} and spotted", "the wings are {c} with spots"],
    "barred": ["its wings are {c} with bars", "the wings are {c} and barred"],
    "plain": ["its wings are plain {c}", "the wings are solid {c}"],
}
_PATTERN_CLAUSE = {
    "striped": ["its wings are striped"], "spotted": ["its wings are spotted"],
    "barred": ["its wings have bars"], "plain": ["its wings are plain", "its wings have no markings"],
}
_ACCENT_NP = {
    "red cap": ["a red cap", "a red crown", "a red patch on its head"],
    "black mask": ["a black mask", "a black eye mask", "a black band across its eyes"],
    "white eyebrow": ["a white eyebrow", "white eyebrows", "a white line over its eye"],
    "yellow beak": ["a yellow beak", "a yellow bill", "a short yellow beak"],
    "crest": ["a crest", "a pointed crest", "a crest on its head", "a tufted crest"],
}
_ACCENT_CLAUSE = {
    "red cap": ["the top of its head is red", "it has a red cap"],
    "black mask": ["it has a black mask", "its eyes are in a black mask"],
    "white eyebrow": ["it has white eyebrows", "a white line runs over its eye"],
    "yellow beak": ["its beak is yellow", "the bill is yellow"],
    "crest": ["its head is crested", "it has a crest on its head"],
}
_SHAPE_NP = {
    "round": ["a round body", "a plump, round body"], "slender": ["a slender body", "a slim build"],
    "long-tailed": ["a long tail", "a very long tail"], "fan-tailed": ["a fan-shaped tail", "a fanned tail"],
}
_SHAPE_ADJ = {"round": ["round", "plump", "chubby"], "slender": ["slender", "slim"],
              "long-tailed": ["long-tailed"], "fan-tailed": ["fan-tailed"]}
_SHAPE_CLAUSE = {"round": ["its body is round"], "slender": ["its body is slender"],
                 "long-tailed": ["its tail is long"], "fan-tailed": ["its tail is fan-shaped"]}
_POSE_SUFFIX = {"perched": ["perched on a branch", "sitting on a branch", "resting on a twig"],
                "flying": ["in flight", "flying", "with its wings spread"]}
_POSE_CLAUSE = {"perched": ["it is perched on a branch", "it sits on a branch"],
                "flying": ["it is flying", "it is in flight"]}
_FACING_SUFFIX = ["facing {d}", "looking to the {d}", "turned to the {d}"]
_FACING_CLAUSE = ["it faces {d}", "it is looking to the {d}"]
_BACKGROUND_SUFFIX = ["against a {c} background", "in front of a {c} background", "on a {c} background"]
_BACKGROUND_CLAUSE = ["the background is {c}", "the backdrop is {c}"]
_SUBJECT_DEF = ["this bird", "the bird", "this small bird", "this little bird", "this particular bird"]
_SUBJECT_INDEF = ["a bird", "a small bird", "a little bird"]
_SPECIES_KEYS = ("body_shape", "body_colour", "wing_colour", "pattern", "accent")


def _colour(rng: Rng, name: str) -> str:
    return rng.choice(BIRD_COLOUR_WORDS[name])


def bird_caption(rng: Rng, gt: Dict[str, Any]) -> Tuple[str, Dict[str, str]]:
    """One caption and the attributes it mentions (a subset of ``gt``)."""
    k = rng.weighted([1, 2, 3, 4, 5], [0.06, 0.2, 0.34, 0.25, 0.15])
    keys = rng.sample(_SPECIES_KEYS, k)
    extras = [key for key, p in BIRD_IMAGE_KEYS.items() if rng.chance(p)]
    rng.shuffle(extras)
    mentioned = {key: gt[key] for key in _SPECIES_KEYS + tuple(BIRD_IMAGE_KEYS) if key in keys + extras}

    adjs: List[str] = []  # adjectives of the subject ("a slender red bird")
    if "body_shape" in mentioned and rng.chance(0.5):
        adjs.append(rng.choice(_SHAPE_ADJ[gt["body_shape"]]))
        keys.remove("body_shape")
    if "body_colour" in mentioned and rng.chance(0.35):
        adjs.append(_colour(rng, gt["body_colour"]))
        keys.remove("body_colour")
    rng.shuffle(keys)
    clause_style = rng.chance(0.3) and bool(keys)
    parts = [_clause(rng, key, gt, keys) if clause_style else _noun_phrase(rng, key, gt, keys) for key in keys]
    parts = [p for p in parts if p]

    adj = " ".join(adjs)
    if clause_style:
        clauses = parts + [_image_phrase(rng, key, gt, clause=True) for key in extras]
        text = (f"this is {article(adj)} {adj} bird; " if adj else "") + join_list(clauses, rng)
    else:
        if not parts:
            text = f"{article(adj)} {adj} bird"  # adj is non-empty: at least one attribute is mentioned
            if rng.chance(0.5):
                text = "this is " + text
        else:
            style = rng.randint(0, 2)
            if style == 0:
                subj = rng.choice(_SUBJECT_DEF)
                if adj:
                    subj = subj.replace("bird", f"{adj} bird")
                text = f"{subj} has {join_list(parts, rng)}"
            elif style == 1:
                subj = rng.choice(_SUBJECT_INDEF)
                if adj:
                    subj = f"{article(adj)} {adj} bird" if subj == "a bird" else subj.replace("bird", f"{adj} bird")
                text = f"{subj} with {join_list(parts, rng)}"
            else:
                text = f"{join_list(parts, rng)} on this {adj + ' ' if adj else ''}bird"
        for key in extras:
            text += ", " + _image_phrase(rng, key, gt, clause=False)
    return " ".join(text.split()) + ".", mentioned


def _image_phrase(rng: Rng, key: str, gt: Dict[str, Any], clause: bool) -> str:
    """Pose, facing or background, as a trailing phrase or as a clause."""
    if key == "pose":
        return rng.choice((_POSE_CLAUSE if clause else _POSE_SUFFIX)[gt["pose"]])
    if key == "facing":
        return rng.choice(_FACING_CLAUSE if clause else _FACING_SUFFIX).format(d=gt["facing"])
    return rng.choice(_BACKGROUND_CLAUSE if clause else _BACKGROUND_SUFFIX).format(c=gt["background_colour"])


def _noun_phrase(rng: Rng, key: str, gt: Dict[str, Any], keys: List[str]) -> str:
    """Noun phrase for ``key``; wing colour and pattern merge into one phrase when both are mentioned."""
    if key == "body_colour":
        if rng.chance(0.25):
            return f"{_colour(rng, gt['body_colour'])} body feathers"
        return f"{article(gt['body_colour'])} {_colour(rng, gt['body_colour'])} {rng.choice(_BODY_NOUN)}"
    if key == "wing_colour":
        if "pattern" in keys:
            return rng.choice(_WING_PATTERN_NP[gt["pattern"]]).format(c=_colour(rng, gt["wing_colour"]))
        return rng.choice(["{c} wings", "{c} wing feathers", "{c} feathers on its wings"]).format(
            c=_colour(rng, gt["wing_colour"]))
    if key == "pattern":
        return "" if "wing_colour" in keys else rng.choice(_PATTERN_NP[gt["pattern"]])
    if key == "accent":
        return rng.choice(_ACCENT_NP[gt["accent"]])
    return rng.choice(_SHAPE_NP[gt["body_shape"]])


def _clause(rng: Rng, key: str, gt: Dict[str, Any], keys: List[str]) -> str:
    if key == "body_colour":
        return f"{rng.choice(['its', 'the'])} {rng.choice(_BODY_NOUN)} is {_colour(rng, gt['body_colour'])}"
    if key == "wing_colour":
        if "pattern" in keys:
            return rng.choice(_WING_PATTERN_CLAUSE[gt["pattern"]]).format(c=_colour(rng, gt["wing_colour"]))
        return f"{rng.choice(['its', 'the'])} wings are {_colour(rng, gt['wing_colour'])}"
    if key == "pattern":
        return "" if "wing_colour" in keys else rng.choice(_PATTERN_CLAUSE[gt["pattern"]])
    if key == "accent":
        return rng.choice(_ACCENT_CLAUSE[gt["accent"]])
    return rng.choice(_SHAPE_CLAUSE[gt["body_shape"]])


def bird_captions(gt: Dict[str, Any], n: int = 10) -> Tuple[List[str], List[Dict[str, str]]]:
    """``n`` captions of one image and, aligned, the attributes each one mentions."""
    return caption_set("bird-captions", gt, n, bird_caption)


# ----------------------------------------------------------------------------- rendering

# body half-axes, head radius, tail kind/length, in units of u (a third of the layer)
_SHAPES = {
    "round": dict(rx=0.60, ry=0.52, head=0.36, tail=0.42, tail_w=0.26, beak=0.40),
    "slender": dict(rx=0.80, ry=0.34, head=0.27, tail=0.65, tail_w=0.16, beak=0.65),
    "long-tailed": dict(rx=0.62, ry=0.42, head=0.31, tail=1.25, tail_w=0.13, beak=0.45),
    "fan-tailed": dict(rx=0.58, ry=0.45, head=0.31, tail=0.80, tail_w=0.0, beak=0.45),
}


def _wing_layer(side: int, root: Tuple[float, float], tip: Tuple[float, float], width: float,
                colour: RGB, pattern: str, rng: Rng) -> Image.Image:
    """A teardrop wing from ``root`` (round end) to ``tip`` with its pattern clipped inside."""
    (x0, y0), (x1, y1) = root, tip
    length = math.hypot(x1 - x0, y1 - y0)
    ax, ay = (x1 - x0) / length, (y1 - y0) / length  # along the wing
    px, py = -ay, ax  # across the wing
    mask = Image.new("L", (side, side), 0)
    md = ImageDraw.Draw(mask)
    md.ellipse([x0 - width, y0 - width, x0 + width, y0 + width], fill=255)
    md.polygon([(x0 + px * width, y0 + py * width), (x1, y1), (x0 - px * width, y0 - py * width)], fill=255)
    wing = Image.new("RGBA", (side, side), colour + (255,))
    d = ImageDraw.Draw(wing)
    mark = contrast_colour(colour)
    if pattern == "striped":
        for t in (0.1, 0.3, 0.5, 0.7):
            cx, cy = x0 + ax * length * t, y0 + ay * length * t
            d.line([(cx - px * width * 1.2, cy - py * width * 1.2), (cx + px * width * 1.2, cy + py * width * 1.2)],
                   fill=mark, width=max(1, int(width * 0.22)))
    elif pattern == "barred":
        for t in (0.2, 0.55):
            cx, cy = x0 + ax * length * t, y0 + ay * length * t
            d.line([(cx - px * width * 1.2, cy - py * width * 1.2), (cx + px * width * 1.2, cy + py * width * 1.2)],
                   fill=mark, width=max(2, int(width * 0.5)))
    elif pattern == "spotted":
        r = width * 0.17
        for t in (-0.2, 0.1, 0.35, 0.6):
            for s in (-0.5, 0.0, 0.5):
                cx = x0 + ax * length * t + px * width * s + rng.uniform(-0.1, 0.1) * width
                cy = y0 + ay * length * t + py * width * s + rng.uniform(-0.1, 0.1) * width
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=mark)
    wing.putalpha(mask)
    return wing


def _draw_bird(gt: Dict[str, Any], side: int, rng: Rng) -> Image.Image:
    """The bird facing right, centred on an RGBA layer of ``side`` pixels."""
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    u = side / 3.3
    sp = _SHAPES[gt["body_shape"]]
    body = jitter_colour(BIRD_COLOURS[gt["body_colour"]], rng)
    wingc = jitter_colour(BIRD_COLOURS[gt["wing_colour"]], rng)
    flying = gt["pose"] == "flying"
    rx, ry, hr = sp["rx"] * u, sp["ry"] * u, sp["head"] * u
    bx, by = side * 0.5 - 0.12 * u, side * 0.52
    dark = (52, 46, 40)

    if not flying:  # branch and legs, behind the body
        foot_y = by + ry + 0.3 * u
        d.line([(0, foot_y + 0.06 * u), (side, foot_y - 0.04 * u)], fill=(105, 78, 50), width=max(2, int(0.09 * u)))
        for lx in (bx - 0.15 * rx, bx + 0.2 * rx):
            d.line([(lx, by + ry * 0.8), (lx + 0.05 * u, foot_y)], fill=dark, width=max(1, int(0.045 * u)))
    else:  # far wing, slightly darker, behind the body
        far = _wing_layer(side, (bx + 0.1 * rx, by - 0.4 * ry), (bx + 0.35 * u, by - ry - 1.0 * u), 0.3 * u,
                          shade(wingc, 0.75), gt["pattern"], rng)
        layer.alpha_composite(far)

    # tail (wing colour), attached at the back of the body
    tx, ty = bx - rx * 0.8, by - ry * 0.05
    droop = 0.05 if flying else 0.35
    tail_dir = (-math.cos(droop), math.sin(droop))
    tl = sp["tail"] * u
    if gt["body_shape"] == "fan-tailed":
        base_angle = math.degrees(math.atan2(tail_dir[1], tail_dir[0]))
        d.pieslice([tx - tl, ty - tl, tx + tl, ty + tl], base_angle - 32, base_angle + 32, fill=wingc)
    else:
        w = sp["tail_w"] * u
        ex, ey = tx + tail_dir[0] * tl, ty + tail_dir[1] * tl
        d.polygon([(tx, ty - w), (ex, ey - w * 0.6), (ex, ey + w * 0.6), (tx, ty + w)], fill=wingc)

    d.ellipse([bx - rx, by - ry, bx + rx, by + ry], fill=body)
    d.chord([bx - rx * 0.8, by - ry * 0.2, bx + rx * 0.8, by + ry * 0.95], 20, 160, fill=shade(body, 1.12))

    # head with its accent, clipped to the head circle
    hx, hy = bx + rx * 0.78, by - ry * 0.72 - hr * 0.35
    beak_col = jitter_colour(BIRD_COLOURS["yellow"], rng) if gt["accent"] == "yellow beak" else (70, 64, 58)
    bl = sp["beak"] * hr * 2.2
    d.polygon([(hx + hr * 0.8, hy - hr * 0.28), (hx + hr * 0.8 + bl, hy + hr * 0.08), (hx + hr * 0.8, hy + hr * 0.3)],
              fill=beak_col)
    if gt["accent"] == "crest":
        for k, ang in enumerate((-120, -100, -80)):
            a = math.radians(ang)
            bxh, byh = hx + math.cos(a) * hr * 0.6, hy + math.sin(a) * hr * 0.6
            ex, ey = hx + math.cos(a - 0.5) * hr * (1.9 - 0.2 * k), hy + math.sin(a - 0.5) * hr * (1.9 - 0.2 * k)
            d.polygon([(bxh - hr * 0.25, byh), (ex, ey), (bxh + hr * 0.25, byh)], fill=wingc)
    head = Image.new("RGBA", (side, side), body + (255,))
    hd = ImageDraw.Draw(head)
    ex, ey, er = hx + hr * 0.38, hy - hr * 0.12, hr * 0.16
    if gt["accent"] == "red cap":
        hd.rectangle([hx - hr, hy - hr, hx + hr, hy - hr * 0.35], fill=jitter_colour(BIRD_COLOURS["red"], rng))
    elif gt["accent"] == "black mask":
        hd.ellipse([ex - hr * 0.75, ey - hr * 0.32, ex + hr * 0.55, ey + hr * 0.32], fill=(20, 20, 20))
    elif gt["accent"] == "white eyebrow":
        hd.arc([ex - hr * 0.55, ey - hr * 0.5, ex + hr * 0.45, ey + hr * 0.35], 190, 350, fill=(250, 250, 248),
               width=max(1, int(hr * 0.16)))
    hd.ellipse([ex - er * 1.4, ey - er * 1.4, ex + er * 1.4, ey + er * 1.4], fill=(235, 232, 225))
    hd.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(10, 10, 10))
    hmask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(hmask).ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=255)
    head.putalpha(hmask)
    layer.alpha_composite(head)

    # near wing
    if flying:
        wing = _wing_layer(side, (bx, by - 0.2 * ry), (bx - 0.25 * u, by - ry - 1.05 * u), 0.34 * u,
                           wingc, gt["pattern"], rng)
    else:
        wing = _wing_layer(side, (bx + 0.2 * rx, by - 0.1 * ry), (bx - rx * 1.25, by + ry * 0.15),
                           min(ry * 0.62, 0.3 * u), wingc, gt["pattern"], rng)
    layer.alpha_composite(wing)
    return layer


def render_bird(gt: Dict[str, Any], size: int) -> Image.Image:
    """Render the image described by ``gt`` at ``size`` x ``size`` pixels (deterministic)."""
    canvas = size * SUPERSAMPLE
    rng = Rng("bird-render", gt["image_seed"])
    img = draw_background(canvas, gt["background"]["texture"], gt["background"]["colour"], rng).convert("RGBA")
    draw_clutter(img, rng, gt["clutter"])
    side = max(8, int(gt["scale"] * canvas))
    bird = _draw_bird(gt, side, rng)
    if gt["facing"] == "left":
        bird = bird.transpose(Image.FLIP_LEFT_RIGHT)
    paste_layer(img, bird, gt["x"] * canvas, gt["y"] * canvas, gt["rotation"])
    return finish(img, size, gt["noise"], gt["image_seed"])

