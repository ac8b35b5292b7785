"""The paper's controls: SPARO's pieces taken away one at a time (docs/model.md, "Controls").

``GapCLIP`` (mean-pooled tokens), ``BottleneckCLIP`` (the concatenated-slot bottleneck without
separate attention) and ``CodebookCLIP`` (an FDT-style sparse codebook read-out), configured by
a ``control_cfg`` block (``ControlCfg``).
"""

from .config import ControlCfg
from .models import CONTROL_CLASSES, BottleneckCLIP, CodebookCLIP, GapCLIP, build_control

__all__ = [
    "CONTROL_CLASSES",
    "BottleneckCLIP",
    "CodebookCLIP",
    "ControlCfg",
    "GapCLIP",
    "build_control",
]
