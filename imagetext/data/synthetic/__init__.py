"""Synthetic image-text worlds, the embedded default data: ``birds`` (CUB-like) and ``scenes`` (COCO-like).

Deterministic from a seed, rendered anti-aliased at any size from 32 to 256 pixels,
with per-image and per-caption ground truth for prompt-faithfulness evaluation.

Example:
    >>> split = load_synthetic("birds", "train", n=8, size=64)
    >>> img = split.samples[0].load_image()
    >>> split.samples[0].caption_attributes[0]   # what caption 0 mentions
"""
from .birds import (
    BIRD_ATTRIBUTES,
    BIRD_BACKGROUNDS,
    BIRD_COLOUR_WORDS,
    BIRD_COLOURS,
    BIRD_FACINGS,
    BIRD_IMAGE_KEYS,
    BIRD_MENTION_VALUES,
    BIRD_POSES,
    SPECIES,
    SPECIES_NAMES,
    class_disjoint_split,
)
from .scenes import (
    INVERSE_RELATION,
    RELATION_WORDS,
    RELATIONS,
    SCENE_CATEGORIES,
    SCENE_COLOUR_RGB,
    SCENE_COLOURS,
    SCENE_NOUNS,
    SCENE_SIZES,
    SIZE_WORDS,
)
from .world import (
    CAPTIONS_PER_IMAGE,
    GENERATOR_VERSION,
    WORLD_OUTPUTS,
    WORLDS,
    class_names,
    load_synthetic,
    make_captions,
    make_ground_truth,
    prepare_world_dir,
    render,
    write_world,
)

__all__ = [
    "BIRD_ATTRIBUTES", "BIRD_BACKGROUNDS", "BIRD_COLOUR_WORDS", "BIRD_COLOURS", "BIRD_FACINGS", "BIRD_IMAGE_KEYS",
    "BIRD_MENTION_VALUES", "BIRD_POSES", "SPECIES", "SPECIES_NAMES",
    "class_disjoint_split", "INVERSE_RELATION", "RELATION_WORDS", "RELATIONS", "SCENE_CATEGORIES",
    "SCENE_COLOUR_RGB", "SCENE_COLOURS", "SCENE_NOUNS", "SCENE_SIZES", "SIZE_WORDS", "CAPTIONS_PER_IMAGE",
    "GENERATOR_VERSION", "WORLDS", "class_names", "load_synthetic", "make_captions", "make_ground_truth",
    "render", "write_world", "prepare_world_dir", "WORLD_OUTPUTS",
]
