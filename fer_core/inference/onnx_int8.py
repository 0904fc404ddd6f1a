"""int8 ONNX models: ONNX Runtime static quantization (QDQ) of a checked fp32 export.

    fer-export --model stcnn --format onnx-int8 --out results/models

The fp32 graph (fer_core/inference/onnx_export.py) is quantized with int8 per-channel weights
and uint8 activations whose ranges are calibrated on CALIBRATION_FACES stratified train faces
(seed 0). Its check is accuracy, not closeness: int8 moves probabilities far more than the fp32
check allows, so the file is written only when its full-val accuracy (no TTA) is within a set
drop of the fp32 model's; both accuracies go into its metadata.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..data.augment import to_model_input
from ..runs.checkpoint import load_model
from .onnx_export import INPUT_NAME, ExportError, OnnxModel, check_faces, export_model, source_metadata, write_metadata
from .registry import ModelRef, resolve

CALIBRATION_FACES = 512  # int8: stratified train faces, seed 0


def quantize_int8(
    fp32_path: str | os.PathLike,
    out: str | os.PathLike,
    calibration: np.ndarray,
    method: str = "minmax",
    per_channel: bool = True,
    exclude: tuple[str, ...] = (),
    fp32_transformer: bool = True,
    percentile: float = 99.999,
) -> None:
    """ONNX Runtime static quantization of an exported fp32 file: QDQ format, int8 per-channel weights,
    uint8 activations whose ranges come from `calibration` (uint8 faces [N, 48, 48]); metadata kept.
    `exclude`: node-name substrings kept in fp32; fp32_transformer: an ST-CNN's spatial transformer
    (every node before its GridSample: localisation net and theta) stays fp32."""
    import onnx

    faces = to_model_input(torch.from_numpy(np.asarray(calibration, dtype=np.uint8))).numpy()
    metadata = read_raw_metadata(fp32_path)

    def write(tmp: Path) -> None:
        transformer_kept = _quantize_static(
            fp32_path, tmp, faces, method, per_channel, exclude, fp32_transformer, percentile
        )
        settings = {
            "tool": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "weights": "int8 per-channel" if per_channel else "int8",
            "activations": "uint8",
            "calibration": method + (f" {percentile}" if method == "percentile" else ""),
            "calibration_faces": len(faces),
            "excluded": list(exclude),
            "fp32_spatial_transformer": transformer_kept,
        }
        metadata.update({"fer.precision": "int8", "fer.int8": json.dumps(settings)})
        write_metadata(tmp, metadata, onnx.load(str(fp32_path), load_external_data=False).doc_string)

    atomic_write(Path(out), write)


def _quantize_static(
    fp32_path, out: Path, faces: np.ndarray, method: str, per_channel: bool, exclude, fp32_transformer: bool, percentile
) -> bool:
    """quantize_static of the pre-processed graph into `out`, quietly (see quantize_int8); whether
    a spatial transformer was kept in fp32."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    pre = out.with_name(out.name + ".pre.onnx")
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            nodes = list(onnx.load(str(pre)).graph.node)
            keep = [n.name for n in nodes if any(e in n.name for e in exclude)]
            grid = next((i for i, n in enumerate(nodes) if n.op_type == "GridSample"), None)
            if fp32_transformer and grid is not None:
                keep += [n.name for n in nodes[: grid + 1]]
            quantize_static(
                str(pre),
                str(out),
                _calibration_reader(faces),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                nodes_to_exclude=keep,
                extra_options={"CalibMovingAverage": False, "CalibPercentile": percentile},
            )
    finally:
        pre.unlink(missing_ok=True)
    return fp32_transformer and grid is not None


def _calibration_reader(faces: np.ndarray):
    """The normalised calibration faces in batches, as ONNX Runtime's calibration reads them
    (a CalibrationDataReader: the class comes with onnxruntime, imported only here)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self, batch: int = 64):
            self.batches = iter([faces[i : i + batch] for i in range(0, len(faces), batch)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    return Reader()


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs per-tensor notes (e.g. on LayerNorm weights) on the root logger."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def calibration_faces(data: str | os.PathLike, n: int = CALIBRATION_FACES) -> np.ndarray:
    from ..data.fer2013 import load_dataset, stratified_indices

    train = load_dataset(data).splits["train"]
    return train.images[stratified_indices(train.labels, n, seed=0)]


def val_accuracy(model: torch.nn.Module, data: str | os.PathLike, limit: int | None = None) -> float:
    """Val accuracy, no TTA (all faces, or `limit` stratified ones, seed 0)."""
    from ..data.fer2013 import load_dataset, stratified_indices
    from .probabilities import predict_probs

    val = load_dataset(data).splits["val"]
    if limit:
        val = val.subset(stratified_indices(val.labels, limit, seed=0))
    return float((predict_probs(model, val.images)[0].argmax(1) == val.labels).mean())


def export_int8(
    source: str | ModelRef,
    target: Path,
    data,
    min_accuracy_drop: float = 0.005,
    method: str = "minmax",
    percentile: float = 99.999,
) -> None:
    """fp32 export (checked), static int8 quantization, and the full-val accuracy of both (no TTA);
    ExportError (nothing written) if int8 loses more than min_accuracy_drop."""
    import tempfile

    source = resolve(source)
    name = source.spec
    model = load_model(source.weights)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        result = export_model(model, fp32, source_metadata(source), check=check_faces(data))
        print(f"{name}: fp32 graph vs PyTorch: {result}")
        staged = Path(tmp) / "int8.onnx"
        quantize_int8(fp32, staged, calibration_faces(data), method=method, percentile=percentile)
        fp32_acc, int8_acc = val_accuracy(OnnxModel(fp32), data), val_accuracy(OnnxModel(staged), data)
        subset = val_accuracy(OnnxModel(staged), data, limit=700)
        print(
            f"{name}: val accuracy (all faces, no TTA) fp32 {fp32_acc:.4f}, int8 {int8_acc:.4f}; "
            f"int8 on 700 stratified val faces (seed 0) {subset:.4f}"
        )
        if int8_acc < fp32_acc - min_accuracy_drop:
            raise ExportError(
                f"{name}: int8 loses {fp32_acc - int8_acc:.4f} of val accuracy (more than {min_accuracy_drop})"
            )
        write_metadata(
            staged,
            {
                **read_raw_metadata(staged),
                "fer.int8_val_accuracy": f"{int8_acc:.4f}",
                "fer.fp32_val_accuracy": f"{fp32_acc:.4f}",
                "fer.int8_val_subset_accuracy": f"{subset:.4f}",
            },
            f"fer-lab {name} int8 (QDQ)",
        )
        atomic_write(target, lambda t: t.write_bytes(staged.read_bytes()))
        print(f"{name}: wrote {target} ({target.stat().st_size / 2**20:.1f} MB)")


def read_raw_metadata(path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
