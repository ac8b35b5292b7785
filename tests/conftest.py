import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _restore_logging():
    """Entry points run in-process (open_clip_train, DINO training) set up the root logger with
    handlers on that test's captured streams: undo it after every test."""
    from training_utils import restored_logging  # it imports open_clip: after HF_HUB_OFFLINE

    with restored_logging():
        yield
