"""The paper's setups as presets (`paper-*`): Methodology / Experimental Setup, Tables 1 and 2.
Where the paper is silent (epochs for ST-CNN, ResNet-50's optimiser) the preset says what we
chose. presets.py lists them with ours in one registry (PRESETS), which is what fer-train,
fer-sweep and the Train form read."""

from __future__ import annotations

from dataclasses import asdict

from ..data.augment import AugmentConfig

_NO_AUGMENT = asdict(AugmentConfig.off())  # the paper mentions no augmentation

# The paper's ST-CNN: Adam lr 1e-4, L2 0.01, ReLU; Table 1 sweeps the batch size.
# Epochs are not given in the paper; 50 as for its ResNet-50.
_PAPER_STCNN = dict(model="stcnn", optimizer="adam", lr=1e-4, weight_decay=0.01, epochs=50, augment=_NO_AUGMENT)
# Table 2: batch 64, 60 epochs, Adam lr 2e-3, ReduceLROnPlateau(val loss, 5, 0.2, 1e-5),
# early stopping on val accuracy with patience 10, dropout 0.1, GELU, pos-emb std 0.02.
_PAPER_VIT = dict(
    model="vit",
    optimizer="adam",
    lr=2e-3,
    batch_size=64,
    epochs=60,
    schedule="plateau",
    plateau_patience=5,
    plateau_factor=0.2,
    min_lr=1e-5,
    early_stopping=10,
    augment=_NO_AUGMENT,
)
_VIT_ROWS = {  # layers, patch size, hidden size, heads, MLP dims, kernel initializer
    "paper-vit-1": (6, 16, 64, 4, 128, "he_uniform"),
    "paper-vit-2": (6, 16, 64, 4, 128, "zeros"),
    "paper-vit-3": (12, 14, 128, 8, 256, "zeros"),
    "paper-vit-4": (18, 12, 192, 12, 384, "zeros"),
}

PAPER_PRESETS: dict[str, dict] = {
    **{f"paper-stcnn-b{b}": dict(_PAPER_STCNN, batch_size=b) for b in (16, 32, 64, 128)},
    "paper-cnn-b128": dict(_PAPER_STCNN, model="cnn", batch_size=128),
    # The paper trains its (Keras) ResNet-50 for 50 epochs; optimiser and batch not given: Adam 1e-3, 64.
    "paper-resnet50": dict(
        model="resnet50",
        model_config={"stem": "imagenet"},
        optimizer="adam",
        lr=1e-3,
        batch_size=64,
        epochs=50,
        augment=_NO_AUGMENT,
    ),
    **{
        name: dict(
            _PAPER_VIT,
            model_config=dict(
                layers=layers, patch_size=p, hidden_size=h, heads=n, mlp_dim=m, kernel_init=k, dropout=0.1
            ),
        )
        for name, (layers, p, h, n, m, k) in _VIT_ROWS.items()
    },
}
