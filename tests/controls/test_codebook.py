"""CodebookQuery against a per-sample, per-code loop."""

import math

import numpy as np
import torch
from controls.test_sparsemax import projection_by_bisection

from open_clip_sparo.controls.codebook import CodebookQuery


def reference(module, tokens, codes, lengths):
    """Scores by explicit loops: code c's score is the max over token positions of
    q_n . c / sqrt(D) / T, positions past the length scoring 0; then sparsemax and the mix."""
    out = []
    for b in range(tokens.shape[0]):
        queries = module.q_map(tokens[b])  # (N, D)
        scores = []
        for c in range(codes.shape[0]):
            per_token = [
                (queries[n] @ codes[c]).item() / math.sqrt(codes.shape[1])
                if n < lengths[b]
                else 0.0
                for n in range(tokens.shape[1])
            ]
            scores.append(max(per_token) / module.temperature)
        weights = projection_by_bisection(np.array(scores))
        out.append(sum(w * codes[c] for c, w in enumerate(weights)))
    return torch.stack(out)


def test_matches_the_loop_with_and_without_padding():
    torch.manual_seed(0)
    module = CodebookQuery(width=12, code_dim=6, temperature=0.5).double()
    tokens, codes = torch.randn(3, 5, 12).double(), torch.randn(9, 6).double()
    lengths = [5, 2, 4]
    padding = torch.arange(5)[None, :] >= torch.tensor(lengths)[:, None]
    with torch.no_grad():
        torch.testing.assert_close(
            module(tokens, codes, padding), reference(module, tokens, codes, lengths)
        )
        torch.testing.assert_close(module(tokens, codes), reference(module, tokens, codes, [5] * 3))


def test_codes_and_map_get_gradients():
    module = CodebookQuery(width=8, code_dim=4, temperature=0.1)
    codes = torch.randn(16, 4, requires_grad=True)
    module(torch.randn(2, 3, 8), codes).sum().backward()
    assert codes.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.parameters())
