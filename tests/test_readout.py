import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo import Sparo


def naive_readout(
    sparo: Sparo,
    tokens: torch.Tensor,
    mask: torch.Tensor | None = None,
    queries: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The read-out of docs/model.md written out: per-slot keys and values for every token."""
    queries = sparo.queries if queries is None else queries
    batch, num_tokens, _ = tokens.shape
    heads, per_head, a = sparo.num_heads, sparo.num_slots // sparo.num_heads, sparo.attn_dim
    keys = (tokens @ sparo.key.weight.T + sparo.key.bias).view(batch, num_tokens, heads, a)
    value_proj = sparo.key if sparo.value is None else sparo.value
    values = (tokens @ value_proj.weight.T + value_proj.bias).view(
        batch, num_tokens, heads, sparo.value_dim
    )
    slots, attns = [], []
    for slot in range(sparo.num_slots):
        head = slot // per_head
        logits = keys[:, :, head] @ queries[slot] / math.sqrt(a)  # (B, N)
        if mask is not None:
            logits = logits.masked_fill(mask, -math.inf)
        attn = logits.softmax(dim=-1)
        z = (attn[:, :, None] * values[:, :, head]).sum(dim=1)  # (B, value_dim)
        slots.append(sparo.out(z))
        attns.append(attn)
    return torch.stack(slots, dim=1), torch.stack(attns, dim=1)


def random_mask(batch: int, num_tokens: int, generator: torch.Generator) -> torch.Tensor:
    """Padding after a random length >= 1, as for text."""
    lengths = torch.randint(1, num_tokens + 1, (batch,), generator=generator)
    return torch.arange(num_tokens)[None, :] >= lengths[:, None]


@settings(max_examples=40, deadline=None)
@given(
    width=st.sampled_from([8, 24]),
    num_heads=st.sampled_from([1, 2, 4]),
    per_head=st.sampled_from([1, 3]),
    attn_dim=st.sampled_from([4, 8]),
    value_dim=st.sampled_from([4, 6]),
    out_dim=st.sampled_from([5, 9]),
    share_kv=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_naive_readout(
    width, num_heads, per_head, attn_dim, value_dim, out_dim, share_kv, masked, seed
):
    if share_kv:
        value_dim = attn_dim
    torch.manual_seed(seed)
    sparo = Sparo(
        width,
        num_heads * per_head,
        out_dim,
        attn_dim,
        value_dim=value_dim,
        num_heads=num_heads,
        share_kv=share_kv,
    ).double()
    with torch.no_grad():  # non-zero biases, so the bias algebra is exercised
        for p in sparo.parameters():
            p.add_(0.1 * torch.randn_like(p))
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(3, 7, width, generator=generator, dtype=torch.float64)
    mask = random_mask(3, 7, generator) if masked else None

    slots, attn = sparo(tokens, mask)
    ref_slots, ref_attn = naive_readout(sparo, tokens, mask)

    torch.testing.assert_close(slots, ref_slots)
    torch.testing.assert_close(attn.double(), ref_attn)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), num_tokens=st.integers(1, 12))
def test_attention_rows_sum_to_one_and_vanish_where_masked(seed, num_tokens):
    torch.manual_seed(seed)
    sparo = Sparo(16, 8, 4, 8, value_dim=8, num_heads=4)
    generator = torch.Generator().manual_seed(seed)
    mask = random_mask(4, num_tokens, generator)
    _, attn = sparo(torch.randn(4, num_tokens, 16, generator=generator), mask)
    assert attn.shape == (4, 8, num_tokens)
    torch.testing.assert_close(attn.sum(-1), torch.ones(4, 8))
    assert (attn.masked_select(mask[:, None, :].expand_as(attn)) == 0).all()


def test_masked_tokens_do_not_change_slots():
    sparo = Sparo(16, 8, 4, 8, value_dim=8, num_heads=8)
    tokens = torch.randn(2, 6, 16)
    mask = torch.tensor([[False] * 4 + [True] * 2] * 2)
    changed = tokens.clone()
    changed[:, 4:] = torch.randn(2, 2, 16) * 100
    torch.testing.assert_close(sparo(tokens, mask)[0], sparo(changed, mask)[0])


def test_perturbing_one_query_changes_only_its_slot():
    sparo = Sparo(16, 8, 4, 8, value_dim=8, num_heads=2)
    tokens = torch.randn(2, 5, 16)
    before, _ = sparo(tokens)
    with torch.no_grad():
        sparo.queries[3] += torch.randn(8)
    after, _ = sparo(tokens)
    changed = (before - after).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [slot == 3 for slot in range(8)]


def test_parameter_layout_and_initialisation():
    torch.manual_seed(0)
    sparo = Sparo(768, 64, 64, 64, value_dim=64, num_heads=64)
    shapes = {name: tuple(p.shape) for name, p in sparo.named_parameters()}
    assert shapes == {
        "queries": (64, 64),
        "key.weight": (4096, 768),
        "key.bias": (4096,),
        "out.weight": (64, 64),
        "out.bias": (64,),
    }
    assert sparo.key.bias.abs().sum() == 0 and sparo.out.bias.abs().sum() == 0
    xavier_bound = math.sqrt(6 / (768 + 4096))
    assert sparo.key.weight.abs().max() <= xavier_bound
    assert abs(sparo.queries.std().item() - 1) < 0.05
    separate = Sparo(768, 64, 64, 64, value_dim=32, num_heads=64, share_kv=False)
    assert tuple(separate.value.weight.shape) == (64 * 32, 768)


def test_shared_queries_are_passed_in():
    owner = Sparo(16, 4, 4, 8, value_dim=8, num_heads=4)
    borrower = Sparo(12, 4, 4, 8, value_dim=8, num_heads=4, shared_queries=True)
    assert borrower.queries is None
    with pytest.raises(ValueError, match="shares its queries"):
        borrower(torch.randn(1, 3, 12))
    slots, _ = borrower(torch.randn(1, 3, 12), queries=owner.queries)
    assert slots.shape == (1, 4, 4)
