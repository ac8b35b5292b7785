"""open_clip_sparo.eos: the end of the text and the padding after it, per pool type."""

import pytest
import torch

from open_clip_sparo.eos import after_eos, check_eos_pool_type, eos_positions

EOT = 49407  # OpenCLIP's tokenizer: the end-of-text id, the largest id in a sequence


def test_eos_positions_follow_openclip_pool_types():
    text = torch.tensor([[49406, 7, EOT, 0, 0], [49406, 5, 6, 9, EOT]])
    assert eos_positions(text, "argmax", None).tolist() == [2, 4]
    assert eos_positions(text, "eos", EOT).tolist() == [2, 4]


@pytest.mark.parametrize("pool_type", ["last", "first", "none"])
def test_pool_types_without_an_end_of_text_token_end_at_the_last_token_before_padding(pool_type):
    """CLIPA's text (bert ids, no end-of-text token, padding 0); a 0 inside the text is kept."""
    text = torch.tensor([[101, 0, 2307, 0, 0], [101, 7, 8, 9, 10], [0, 0, 0, 0, 0]])
    assert eos_positions(text, pool_type, None).tolist() == [2, 4, 0]
    assert eos_positions(text, pool_type, None, pad_id=1).tolist() == [4, 4, 4]
    assert after_eos(text, pool_type, None)[0].tolist() == [False, False, False, True, True]


def test_after_eos_masks_only_the_positions_after_it():
    text = torch.tensor([[49406, 7, EOT, 0, 0]])
    assert after_eos(text, "argmax", None).tolist() == [[False, False, False, True, True]]


def test_the_codebook_control_needs_an_end_of_text_token():
    check_eos_pool_type("argmax")
    with pytest.raises(ValueError, match=r"pool_type='last' does not locate an end-of-text"):
        check_eos_pool_type("last")
