import torch

from open_clip_sparo.dino import DinoHead


def test_head_maps_to_prototype_cosines():
    head = DinoHead(32, out_dim=100, hidden_dim=48, bottleneck_dim=16)
    out = head(torch.randn(5, 32) * 10)
    assert out.shape == (5, 100)
    # unit bottleneck times unit prototypes: every score is a cosine
    assert out.abs().max() <= 1 + 1e-5
    prototypes = head.last_layer.weight  # (100, 16), the weight norm's result
    torch.testing.assert_close(prototypes.norm(dim=1), torch.ones(100))


def test_norm_last_layer_freezes_the_magnitude_only():
    frozen = DinoHead(8, out_dim=10, hidden_dim=8, bottleneck_dim=4)
    free = DinoHead(8, out_dim=10, hidden_dim=8, bottleneck_dim=4, norm_last_layer=False)
    magnitude = frozen.last_layer.parametrizations.weight.original0
    direction = frozen.last_layer.parametrizations.weight.original1
    assert not magnitude.requires_grad and direction.requires_grad
    assert free.last_layer.parametrizations.weight.original0.requires_grad


def test_head_layers_and_gradients():
    head = DinoHead(8, out_dim=10, hidden_dim=12, bottleneck_dim=4, num_layers=3)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 12), (12, 12), (12, 4)]
    assert sum(isinstance(m, torch.nn.GELU) for m in head.mlp) == 2
    head(torch.randn(3, 8)).sum().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
