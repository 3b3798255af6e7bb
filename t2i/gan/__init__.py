"""Phase 2: text-to-image GANs on the frozen phase-1 encoders (one trainer, registered variants).

Importing this package registers the built-in variants in :data:`imagetext.registry.GANS`
(the ``imagetext.plugins`` entry point does it for the registry).
"""
from . import dfgan  # noqa: F401  (registers "dfgan")
from . import ssagan  # noqa: F401  (registers "ssagan")
from . import attngan, dmgan  # noqa: F401

try:  # variants written later register the same way
    from . import galip  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover
    if e.name != f"{__name__}.galip":
        raise
from . import pipeline  # noqa: F401  (registers the "t2i-gan" saved-model format)
