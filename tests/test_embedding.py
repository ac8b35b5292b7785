import pytest
import torch
import torch.nn.functional as F
from fork_utils import SPARO_TYPES, fork_slot_embedding
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo import SlotEmbedding
from open_clip_sparo.config import SLOT_REPRS, SLOT_WEIGHTS
from open_clip_sparo.embedding import check_slot_indices

NUM_SLOTS, SLOT_DIM = 6, 5


def read_out(embedding: SlotEmbedding, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(batch, NUM_SLOTS, SLOT_DIM + embedding.needs_logit, generator=generator)


@settings(max_examples=40, deadline=None)
@given(
    slot_repr=st.sampled_from(SLOT_REPRS),
    slot_weight=st.sampled_from(SLOT_WEIGHTS),
    seed=st.integers(0, 2**16),
    selected=st.none() | st.sets(st.integers(0, NUM_SLOTS - 1), min_size=1),
)
def test_embedding_has_unit_norm(slot_repr, slot_weight, seed, selected):
    embedding = SlotEmbedding(slot_repr, slot_weight)
    embedding.selected = None if selected is None else tuple(sorted(selected))
    slots = embedding(read_out(embedding, 4, seed))
    assert slots.shape == (4, NUM_SLOTS, SLOT_DIM)
    torch.testing.assert_close(slots.flatten(1).norm(dim=-1), torch.ones(4))
    if selected is not None:
        unselected = [i for i in range(NUM_SLOTS) if i not in selected]
        assert (slots[:, unselected] == 0).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), selected=st.sets(st.integers(0, NUM_SLOTS - 1), min_size=1))
def test_default_similarity_is_mean_of_slot_cosines(seed, selected):
    embedding = SlotEmbedding()
    image, text = read_out(embedding, 3, seed), read_out(embedding, 3, seed + 1)
    cosines = F.cosine_similarity(image, text, dim=-1)  # (B, L)
    similarity = (embedding(image).flatten(1) * embedding(text).flatten(1)).sum(-1)
    torch.testing.assert_close(similarity, cosines.mean(-1))
    embedding.selected = tuple(sorted(selected))
    similarity = (embedding(image).flatten(1) * embedding(text).flatten(1)).sum(-1)
    torch.testing.assert_close(similarity, cosines[:, sorted(selected)].mean(-1))


def test_slot_representations_follow_their_definitions():
    y = torch.randn(2, NUM_SLOTS, SLOT_DIM)
    scale = NUM_SLOTS**-0.5
    expected = {
        "cont": F.normalize(y, dim=-1),
        "sem": F.normalize(y.softmax(-1), dim=-1),
        "sqrtsem": y.softmax(-1).sqrt(),
    }
    for slot_repr, vectors in expected.items():
        torch.testing.assert_close(SlotEmbedding(slot_repr)(y), scale * vectors)


def test_slot_weights_follow_their_definitions():
    y = torch.randn(2, NUM_SLOTS, SLOT_DIM + 1)
    unit = F.normalize(y[..., :SLOT_DIM], dim=-1)
    norms = y[..., :SLOT_DIM].norm(dim=-1)
    probs = y[..., -1].softmax(-1)
    expected = {
        "norm": (
            SlotEmbedding(slot_weight="norm"),
            y[..., :SLOT_DIM],
            norms / norms.norm(dim=-1, keepdim=True),
        ),
        "softmax": (SlotEmbedding(slot_weight="softmax"), y, F.normalize(probs, dim=-1)),
        "sqrtsoftmax": (SlotEmbedding(slot_weight="sqrtsoftmax"), y, probs.sqrt()),
    }
    for name, (embedding, inputs, weights) in expected.items():
        assert embedding.needs_logit == (name != "norm")
        torch.testing.assert_close(embedding(inputs), unit * weights[..., None])


def test_output_keeps_input_dtype_and_is_finite_in_half_precision():
    for dtype in (torch.bfloat16, torch.float16):
        for slot_repr in SLOT_REPRS:
            slots = SlotEmbedding(slot_repr, "sqrtsoftmax")(
                torch.randn(2, NUM_SLOTS, SLOT_DIM + 1, dtype=dtype) * 50
            )
            assert slots.dtype == dtype and torch.isfinite(slots).all()


@pytest.mark.parametrize(
    ("indices", "message"),
    [([], "empty"), ([1, 1], "repeats"), ([0, 6], "out of range"), ([-1], "out of range")],
)
def test_check_slot_indices_rejects_bad_selections(indices, message):
    with pytest.raises(ValueError, match=message):
        check_slot_indices(indices, NUM_SLOTS)


def test_check_slot_indices_sorts():
    assert check_slot_indices([4, 0, 2], NUM_SLOTS) == (0, 2, 4)


@settings(max_examples=40, deadline=None)
@given(
    sparo_type=st.sampled_from(SPARO_TYPES),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.1, 3.0, 20.0]),
)
def test_each_option_is_the_authors_definition(sparo_type, seed, scale):
    """As the authors' code defines each option (logit first there, last here); sqrtsem slots
    with norm weights are weighted by ``||exp(y_l / 2)||``, the norm of what sqrtsem normalises."""
    slot_repr, slot_weight = sparo_type.split(":")
    embedding = SlotEmbedding(slot_repr, slot_weight)
    generator = torch.Generator().manual_seed(seed)
    fork_slots = scale * torch.randn(
        3, NUM_SLOTS, SLOT_DIM + embedding.needs_logit, generator=generator
    )
    ours = torch.roll(fork_slots, -1, dims=-1) if embedding.needs_logit else fork_slots
    expected = fork_slot_embedding(fork_slots.double(), sparo_type).float()
    torch.testing.assert_close(embedding(ours).flatten(1), expected)


def test_sqrtsem_norm_weights_do_not_overflow():
    slots = torch.tensor([[[200.0, 0.0], [100.0, 1.0]]])  # exp(200 / 2) overflows in float32
    weights = SlotEmbedding("sqrtsem", "norm")(slots).norm(dim=-1)
    expected = torch.tensor([[1.0, torch.exp(torch.tensor(-50.0)).item()]])
    torch.testing.assert_close(weights, expected)
