"""SPARO training through OpenCLIP's own loop: ``torchrun -m training.main -- <arguments>``.

``training.main`` adds the SPARO flags, applies the fixes the pinned stack needs and hands over
to ``open_clip_train.main.main``; everything else is open_clip_train's. Importing the package
first checks the open_clip_train names it hooks into (``internals``).
"""

from . import internals  # noqa: F401  (the check, before any module here imports open_clip_train)
