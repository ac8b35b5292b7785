"""SPARO read-outs for OpenCLIP (Vani et al., ECCV 2024).

Importing this package registers the ``sparo-*`` model configs with OpenCLIP's factory::

    import open_clip, open_clip_sparo
    model, _, preprocess = open_clip.create_model_and_transforms("sparo-ViT-B-16")
"""

from .checkpoint import save_pretrained
from .config import SparoCfg
from .embedding import SlotEmbedding
from .model import SparoCLIP
from .output import SparoOutput
from .readout import Sparo
from .registry import register
from .selection import select_slots
from .vision import SparoVisionTransformer

__version__ = "0.1.0"
__all__ = [
    "SlotEmbedding",
    "Sparo",
    "SparoCLIP",
    "SparoCfg",
    "SparoOutput",
    "SparoVisionTransformer",
    "register",
    "save_pretrained",
    "select_slots",
]

register()
