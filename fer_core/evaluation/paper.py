"""The paper's own reported numbers (its Tables 1 and 2), shown beside ours in the dashboard.

Measured by the authors on their own 80:20 split of FER2013, so they are not directly
comparable with numbers on the official PublicTest/PrivateTest splits.
"""

TABLE1_STCNN_BATCH = [  # batch size, accuracy, loss, AUC, F1
    {"batch_size": 16, "accuracy": 0.75, "loss": 1.27, "auc": 0.94, "macro_f1": 0.72},
    {"batch_size": 32, "accuracy": 0.74, "loss": 1.29, "auc": 0.94, "macro_f1": 0.72},
    {"batch_size": 64, "accuracy": 0.78, "loss": 1.12, "auc": 0.95, "macro_f1": 0.75},
    {"batch_size": 128, "accuracy": 0.785, "loss": 1.05, "auc": 0.95, "macro_f1": 0.76},
]

TABLE2_VIT = [  # layers, patch, hidden, heads, MLP dims, kernel init, accuracy, loss, F1
    {
        "layers": 6,
        "patch_size": 16,
        "hidden_size": 64,
        "heads": 4,
        "mlp_dim": 128,
        "kernel_init": "he_uniform",
        "accuracy": 0.3927,
        "loss": 1.55,
        "macro_f1": 0.37,
    },
    {
        "layers": 6,
        "patch_size": 16,
        "hidden_size": 64,
        "heads": 4,
        "mlp_dim": 128,
        "kernel_init": "zeros",
        "accuracy": 0.40,
        "loss": 1.54,
        "macro_f1": 0.38,
    },
    {
        "layers": 12,
        "patch_size": 14,
        "hidden_size": 128,
        "heads": 8,
        "mlp_dim": 256,
        "kernel_init": "zeros",
        "accuracy": 0.26,
        "loss": 1.77,
        "macro_f1": 0.25,
    },
    {
        "layers": 18,
        "patch_size": 12,
        "hidden_size": 192,
        "heads": 12,
        "mlp_dim": 384,
        "kernel_init": "zeros",
        "accuracy": 0.25,
        "loss": 1.78,
        "macro_f1": 0.25,
    },
]

HEADLINE = {"stcnn": 0.785, "resnet50": 0.6775, "vit": 0.40}
