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


@pytest.fixture(scope="session")
def hooked_python(tmp_path_factory):
    """A fresh virtual environment as an install of this checkout leaves it: its site-packages
    holds the package's ``.pth`` file and sees this checkout's ``src`` and this interpreter's
    packages (torch, OpenCLIP, ...). Its ``python``, for processes that never import
    ``open_clip_sparo`` by name."""
    from autoload_utils import make_hooked_venv

    return make_hooked_venv(tmp_path_factory.mktemp("hooked-venv"))
