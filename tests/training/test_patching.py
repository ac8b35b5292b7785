"""training.patching: temporary replacement of upstream attributes."""

from __future__ import annotations

import argparse

import pytest

from training.patching import patched


def test_patched_restores_and_refuses_unknown_names() -> None:
    target = argparse.Namespace(value=1)
    with patched(target, "value", 2):
        assert target.value == 2
    assert target.value == 1
    with pytest.raises(RuntimeError, match="no attribute 'missing'"), patched(target, "missing", 3):
        pass
