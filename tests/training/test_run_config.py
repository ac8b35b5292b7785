"""training.run_config: the run folder's record of the built model."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
from training_utils import MODEL

from training.model_config import deep_merge
from training.run_config import run_config, write_run_config


def test_run_config_is_kept_on_resume_and_never_replaced(tmp_path: Path) -> None:
    model = open_clip.create_model(MODEL)
    config = run_config(MODEL, model, model.model_cfg)
    path = write_run_config(tmp_path, config)
    written = path.read_text()
    assert write_run_config(tmp_path, config) == path and path.read_text() == written
    other = deep_merge(config, {"model_cfg": {"sparo_cfg": {"num_slots": 8}}})
    with pytest.raises(ValueError, match=r"records other settings than this run.s \(model_cfg\)"):
        write_run_config(tmp_path, other)
    assert path.read_text() == written
