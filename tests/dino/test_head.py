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


def test_batchnorm_takes_out_what_the_batch_shares():
    """Inputs that share a large component (as a tiny ViT's features do at initialisation) map to
    nearly one bottleneck direction without BatchNorm, and to spread-out ones with it."""
    torch.manual_seed(0)
    inputs = torch.randn(1, 32) * 10 + torch.randn(64, 32) * 0.1  # (64, 32), cosines near 1
    plain = DinoHead(32, out_dim=10, hidden_dim=48, bottleneck_dim=16)
    with_bn = DinoHead(32, out_dim=10, hidden_dim=48, bottleneck_dim=16, use_bn=True)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in with_bn.mlp) == 2

    def mean_cosine(head: DinoHead) -> float:
        bottleneck = torch.nn.functional.normalize(head.mlp(inputs), dim=-1)
        return (bottleneck @ bottleneck.T).mean().item()

    assert mean_cosine(plain) > 0.95
    assert mean_cosine(with_bn) < 0.5
