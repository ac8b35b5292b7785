"""The authors' fork (ankitkv/sparo-clip): its model configs and checkpoint layout, read into this
project's (docs/fork.md).

Importing this package lets ``SparoCLIP.load_state_dict`` read checkpoints in the fork's layout,
so ``create_model(..., pretrained=FORK_CHECKPOINT)`` converts them on load.
"""

from ..state_dict import register_state_dict_adapter
from .state_dict import adapt_fork_state_dict

register_state_dict_adapter(adapt_fork_state_dict)
