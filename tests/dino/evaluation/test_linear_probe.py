import json
import shutil

import pytest
import torch
from dino_utils import fails_with, labelled_folders, one_thread, untrained_checkpoint

from open_clip_sparo.dino.evaluation.linear_probe import main, train_linear_probe


def test_linear_probe_separates_linearly_separable_classes():
    torch.manual_seed(0)
    # class c is shifted along direction c, on top of a large shared offset and scale
    labels = torch.arange(3).repeat(40)
    features = torch.randn(120, 16) + 6 * torch.eye(16)[labels] + 50
    probe = train_linear_probe(features, labels, num_classes=3, epochs=30, batch_size=32)
    with torch.no_grad():
        accuracy = (probe(features).argmax(1) == labels).float().mean()
    assert accuracy == 1.0
    # the probe standardises with the training set's statistics
    torch.testing.assert_close(probe[0].running_mean, features.mean(0))


def test_linear_probe_command(tmp_path):
    train, val = labelled_folders(tmp_path)
    checkpoint = untrained_checkpoint(tmp_path / "sparo.pt", "sparo-ViT-Ti-8-64")
    out = tmp_path / "probe.json"
    argv = [
        "--checkpoint", str(checkpoint), "--train-data", str(train), "--val-data", str(val),
        "--workers", "0", "--device", "cpu", "--epochs", "20", "--out", str(out),
    ]  # fmt: skip
    with one_thread():
        assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["backbone"] == "sparo-ViT-Ti-8-64" and results["network"] == "teacher"
    assert results["linear_probe"]["epochs"] == 20
    assert results["linear_probe"]["top1"] > 50  # four colours, linearly separable


def test_a_probe_on_fewer_than_two_images_is_refused(tmp_path, capsys, caplog):
    with pytest.raises(ValueError, match=r"at least 2 training images .* it has 1"):
        train_linear_probe(torch.randn(1, 4), torch.zeros(1, dtype=torch.long), num_classes=4)
    train_linear_probe(torch.randn(3, 4), torch.arange(3), num_classes=4, epochs=1)
    assert "has 3 images for 4 classes" in caplog.text
    # the command: before, 21.0 on one training image with a NaN variance
    train, val = labelled_folders(tmp_path)
    first, *others = sorted(train.iterdir())  # one class folder of one image
    for folder in others:
        shutil.rmtree(folder)
    for image in sorted(first.iterdir())[1:]:
        image.unlink()
    checkpoint = untrained_checkpoint(tmp_path / "sparo.pt", "sparo-ViT-Ti-8-64")
    argv = [
        "--checkpoint", str(checkpoint), "--train-data", str(train), "--val-data", str(val),
        "--workers", "0", "--device", "cpu", "--epochs", "1",
    ]  # fmt: skip
    with one_thread():
        fails_with(capsys, main, argv, "needs at least 2 training images")


def test_a_probe_validated_on_its_training_images_warns(tmp_path, caplog):
    """The same two-image folder as --train-data and --val-data: the accuracy is no evidence."""
    train, _ = labelled_folders(tmp_path, per_class=1)
    checkpoint = untrained_checkpoint(tmp_path / "sparo.pt", "sparo-ViT-Ti-8-64")
    argv = [
        "--checkpoint", str(checkpoint), "--train-data", str(train), "--val-data", str(train),
        "--workers", "0", "--device", "cpu", "--epochs", "2",
    ]  # fmt: skip
    with one_thread():
        assert main(argv) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("4 of the 4 items of --val-data" in w and "--train-data" in w for w in warnings)
    assert any("with fewer than 50 the score is mostly noise" in w for w in warnings)
