"""sparsemax against the simplex projection found by bisection, and its Jacobian."""

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from open_clip_sparo.controls.sparsemax import sparsemax


def projection_by_bisection(z: np.ndarray) -> np.ndarray:
    """argmin_p ||p - z|| on the simplex: p = max(z - tau, 0) with sum p = 1, tau by bisection."""
    low, high = z.min() - 1.0, z.max()
    for _ in range(200):
        tau = (low + high) / 2
        if np.maximum(z - tau, 0).sum() > 1:
            low = tau
        else:
            high = tau
    return np.maximum(z - (low + high) / 2, 0)


rows = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 12)),
              elements=st.floats(-5, 5))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(rows)
def test_matches_the_projection_onto_the_simplex(x):
    out = sparsemax(torch.from_numpy(x)).numpy()
    expected = np.stack([projection_by_bisection(row) for row in x])
    np.testing.assert_allclose(out, expected, atol=1e-9)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-12)


def test_other_dim_and_sparsity():
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(sparsemax(x, dim=1), sparsemax(x.transpose(1, 2)).transpose(1, 2))
    out = sparsemax(torch.tensor([[3.0, 0.0, -1.0], [0.1, 0.0, 0.05]]))
    torch.testing.assert_close(out[0], torch.tensor([1.0, 0.0, 0.0]))  # far apart: one-hot
    assert (out[1] > 0).all()  # close together: dense


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(2, 10), elements=st.floats(-3, 3), unique=True))
def test_gradient_is_the_projection_jacobian(z):
    x = torch.from_numpy(z).requires_grad_(True)
    out = sparsemax(x).detach().numpy()
    threshold = (z - out)[out > 0][0]
    assume(np.all(np.abs(z - threshold) > 1e-6))  # off the kinks, where a Jacobian exists
    jacobian = torch.autograd.functional.jacobian(sparsemax, x).numpy()
    support = (sparsemax(x) > 0).detach().numpy().astype(float)
    expected = np.diag(support) - np.outer(support, support) / support.sum()
    np.testing.assert_allclose(jacobian, expected, atol=1e-9)
