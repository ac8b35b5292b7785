"""open_clip_sparo.eos: the end-of-text position and the padding after it, per pool type."""

import pytest
import torch

from open_clip_sparo.eos import after_eos, check_eos_pool_type, eos_positions

EOT = 49407  # OpenCLIP's tokenizer: the end-of-text id, the largest id in a sequence


def test_eos_positions_follow_openclip_pool_types():
    text = torch.tensor([[49406, 7, EOT, 0, 0], [49406, 5, 6, 9, EOT]])
    assert eos_positions(text, "argmax", None).tolist() == [2, 4]
    assert eos_positions(text, "eos", EOT).tolist() == [2, 4]
    assert eos_positions(text, "last", None).tolist() == [4, 4]


def test_after_eos_masks_only_the_positions_after_it():
    text = torch.tensor([[49406, 7, EOT, 0, 0]])
    assert after_eos(text, "argmax", None).tolist() == [[False, False, False, True, True]]
    assert not after_eos(text, "last", None).any()


def test_pool_types_without_an_end_of_text_token_are_refused():
    check_eos_pool_type("argmax")
    with pytest.raises(ValueError, match=r"pool_type='first' does not locate an end-of-text"):
        check_eos_pool_type("first")
