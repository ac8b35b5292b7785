"""SPARO read-outs for OpenCLIP (Vani et al., ECCV 2024).

Importing this package registers the ``sparo-*`` model configs with OpenCLIP's factory::

    import open_clip, open_clip_sparo
    model, _, preprocess = open_clip.create_model_and_transforms("sparo-ViT-B-16")
"""

from . import fork  # noqa: F401  (registers the fork's checkpoint layout)
from .config import SparoCfg
from .embedding import SlotEmbedding
from .io.checkpoint import save_pretrained
from .io.loading import load_model
from .model import SparoCLIP
from .readout import Sparo, SparoOutput
from .registry import register
from .selection import select_slots
from .timm_vision import SparoTimmVision
from .vision import SparoVisionTransformer

__version__ = "0.1.0"
__all__ = [
    "SlotEmbedding",
    "Sparo",
    "SparoCLIP",
    "SparoCfg",
    "SparoOutput",
    "SparoTimmVision",
    "SparoVisionTransformer",
    "load_model",
    "register",
    "save_pretrained",
    "select_slots",
]

register()
