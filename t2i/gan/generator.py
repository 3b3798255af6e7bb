"""The exported generator: any registered variant's generator as a diffusers ``ModelMixin``/``ConfigMixin``
(``config.json`` + ``diffusion_pytorch_model.safetensors``). Kept apart from :mod:`t2i.gan.pipeline`
so importing the package (every ``t2i`` command loads the registry) does not import diffusers.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from imagetext.registry import GANS

from .variant import Condition, final_image


def _rebuild_encoder(meta: Optional[Dict[str, Any]]) -> Optional[nn.Module]:
    """An encoder's architecture from its saved ``{"class", "args"}`` (weights come with the generator's)."""
    if not meta:
        return None
    from imagetext.encoders.base import encoder_from_config

    return encoder_from_config(meta)


class T2IGenerator(ModelMixin, ConfigMixin):
    """Any registered variant's generator, saved and loaded the diffusers way."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, variant: str = "dfgan", imsize: int = 64, cond_dim: int = 256,
                 variant_kwargs: Optional[Dict[str, Any]] = None, image_encoder: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        v = GANS.get(variant)(imsize=imsize, cond_dim=cond_dim, image_encoder=_rebuild_encoder(image_encoder),
                              **(variant_kwargs or {}))
        self.generator = v.generator
        self.noise_dim = v.noise_dim
        self.needs_words = v.needs_words

    def forward(self, noise: torch.Tensor, cond: Condition) -> torch.Tensor:
        """The finest image (multi-stage generators return every stage; the pipeline wants the last)."""
        return final_image(self.generator(noise, cond))
