"""Every architecture builds, runs forward/backward at 48x48, and round-trips a checkpoint."""

from __future__ import annotations

import pytest
import torch

from fer_core.data.augment import AugmentConfig, augment_batch, batch_mixer, to_model_input, tta_views
from fer_core.models import MODELS, count_parameters, create_model
from fer_core.runs.checkpoint import load_model, read_checkpoint_metadata, save_checkpoint
from fer_core.runs.presets import PRESETS, preset_config

SMALL = {
    "stcnn": {"widths": [8, 16, 16, 32]},
    "cnn": {"widths": [8, 16, 16, 32]},
    "resnet50": {},
    "vit": {"layers": 2, "patch_size": 6, "hidden_size": 32, "heads": 4, "mlp_dim": 64},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_shapes(name):
    model = create_model(name, **SMALL[name])
    x = torch.randn(3, 1, 48, 48, requires_grad=True)
    logits = model(x)
    assert logits.shape == (3, 7)
    logits.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_paper_sizes():
    assert 20e6 < count_parameters(create_model("resnet50")) < 25e6  # "over 23 million" in the paper
    assert count_parameters(create_model("resnet50", stem="small")) > 20e6
    with pytest.raises(ValueError):
        create_model("resnet50", stem="huge")


def test_vit_conv_stem_gives_the_same_tokens_as_patches():
    cfg = dict(layers=1, patch_size=8, hidden_size=32, heads=4, mlp_dim=64)
    patch, conv = create_model("vit", **cfg), create_model("vit", **cfg, stem="conv")
    assert patch.pos_embed.shape == conv.pos_embed.shape == (1, 6 * 6 + 1, 32)
    strides = [m.stride[0] for m in conv.patch_embed if isinstance(m, torch.nn.Conv2d)]
    assert strides == [2, 2, 2, 1]  # three halvings 48 -> 6, then the 1x1 projection
    assert conv(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    for bad in (dict(cfg, stem="conv", patch_size=6), dict(cfg, stem="resnet")):
        with pytest.raises(ValueError):
            create_model("vit", **bad)


def test_stcnn_theta_limit_keeps_the_sampler_on_the_face():
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    x = torch.randn(2, 1, 48, 48)
    model = create_model("stcnn", **SMALL["stcnn"], theta_limit=0.5).eval()
    assert torch.allclose(model.theta(x), identity.expand(2, 2, 3))  # still starts at the identity
    with torch.no_grad():  # what a diverged localisation net outputs (seen in a real run)
        model.localization[-1].bias.copy_(torch.tensor([1.65, -1.45, 1.11, -0.85, 1.18, 2.5]) * 10)
    assert (model.theta(x) - identity).abs().max() <= 0.5
    unbounded = create_model("stcnn", **SMALL["stcnn"]).eval()
    unbounded.localization.load_state_dict(model.localization.state_dict())
    assert (unbounded.theta(x) - identity).abs().max() > 10


def test_stcnn_starts_at_identity_transform():
    model = create_model("stcnn", **SMALL["stcnn"]).eval()
    x = torch.randn(2, 1, 48, 48)
    theta = model.theta(x)
    assert torch.allclose(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3))
    assert torch.allclose(model.transform(x), x, atol=1e-5)
    # and the classifier sees exactly what the plain CNN would
    cnn = model.classifier
    assert torch.allclose(model(x), cnn(x), atol=1e-5)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("paper-vit")])
def test_paper_table2_vits_build(preset):
    cfg = preset_config(preset)
    model = create_model("vit", **cfg.model_config)
    grid = 48 // cfg.model_config["patch_size"]  # 14 -> 3x3 patches, like Keras' VALID patches
    assert model.pos_embed.shape[1] == grid * grid + 1
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    if cfg.model_config["kernel_init"] == "zeros":
        assert model.head.weight.abs().sum() == 0
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.schedule, cfg.early_stopping) == (64, 60, 2e-3, "plateau", 10)


def test_paper_table1_presets():
    for b in (16, 32, 64, 128):
        cfg = preset_config(f"paper-stcnn-b{b}")
        assert (cfg.model, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.optimizer) == ("stcnn", b, 1e-4, 0.01, "adam")


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("alexnet")


def test_checkpoint_rebuilds_model_alone(tmp_path):
    model = create_model("vit", **SMALL["vit"]).eval()
    save_checkpoint(model, tmp_path / "m.safetensors", epoch=3)
    meta = read_checkpoint_metadata(tmp_path / "m.safetensors")
    assert meta["model"] == "vit" and meta["config"]["hidden_size"] == 32 and meta["info"]["epoch"] == 3
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.randn(2, 1, 48, 48)
    assert torch.equal(model(x), loaded(x))
    save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (tmp_path / "m.safetensors").stat().st_size
    assert torch.allclose(load_model(tmp_path / "half.safetensors")(x), model(x), atol=1e-2)


def test_batch_augmentation():
    x = to_model_input(torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8))
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(augment_batch(x, AugmentConfig.off(), g), x)
    y = augment_batch(x, AugmentConfig(erasing=1.0), g)
    assert y.shape == x.shape and not torch.allclose(y, x)
    flip_only = AugmentConfig(crop_padding=0, flip=True, rotation_degrees=0, scale=0)
    z = augment_batch(x, flip_only, torch.Generator().manual_seed(1))
    for a, b in zip(z, x, strict=True):  # every image is either itself or its mirror image
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)
    # same seed, same augmentation (what makes --resume exact)
    assert torch.equal(
        augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(5)),
        augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(5)),
    )
    assert len(tta_views(x, "none")) == 1 and len(tta_views(x, "flip")) == 2
    views = tta_views(x, "tencrop")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)


@pytest.mark.parametrize("mixup,cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_and_cutmix_blend_images_and_labels_alike(mixup, cutmix):
    """Each mixed image is lam * itself + (1 - lam) * its neighbour in the batch (everywhere for
    MixUp, a pasted rectangle covering 1 - lam of it for CutMix), and its soft label gives lam and
    1 - lam to the two images' classes. With both on, each batch gets one of the two."""
    assert batch_mixer(0.0, 0.0, 7) is None
    torch.manual_seed(0)
    x = torch.rand(32, 1, 48, 48)
    labels = torch.arange(32) % 7  # neighbours always differ in class
    for _ in range(4):
        mixed, soft = batch_mixer(mixup, cutmix, 7)(x, labels)
        assert mixed.shape == x.shape and soft.shape == (32, 7)
        assert torch.allclose(soft.sum(1), torch.ones(32))
        lam = soft[torch.arange(32), labels]
        assert torch.allclose(soft[torch.arange(32), labels.roll(1)], 1 - lam)
        partner = x.roll(1, 0)
        blended = all(torch.allclose(mixed[i], lam[i] * x[i] + (1 - lam[i]) * partner[i], atol=1e-5) for i in range(32))
        pasted = all(
            float(torch.isclose(mixed[i], x[i]).float().mean()) == pytest.approx(float(lam[i]), abs=0.03)
            for i in range(32)
        )
        assert blended != pasted
        if not cutmix:
            assert blended
        if not mixup:
            assert pasted
