"""ONNX export of the models and an ONNX Runtime backend that stands in for a torch model.

    fer-export --model stcnn|resnet50|vit|ensemble|RUN|CHECKPOINT --format onnx --out DIR
    fer-export --model stcnn --format onnx-int8 --out results/models     # ORT static int8 (QDQ)

The graph (torch.onnx.export(dynamo=True), opset OPSET) is exactly the torch model's forward:

- input  "input":  float32 [N, 1, 48, 48], N dynamic (1 ... any), NCHW, grayscale, ALREADY NORMALISED as
  fer_core.data.augment.to_model_input makes it: x = (pixel_uint8 / 255 - 0.508) / 0.255.
  The normalisation stays outside the graph on purpose: the test-time views (flip, tencrop's
  zero padding) are taken of the normalised tensor, so OnnxModel drops into predict_probs unchanged.
- output "logits": float32 [N, 7] in fer_core.classes.CLASSES order; softmax(dim=1) = probabilities.

Everything a consumer needs is in the file's metadata_props (all strings, keys "fer.*"; read them
with `read_metadata(path)` or onnx / onnxruntime's modelmeta.custom_metadata_map): class names,
input shape/dtype/layout, normalisation (scale 1/255, mean, std), output kind, the view the model
card chose (`fer.tta`, "none" for anything but a shipped name), source run id and epoch, the
weights' file and sha256, architecture and config, precision (fp32 or int8).

`--model ensemble` writes one file per member it runs (weight above 0 in its record: stcnn.onnx,
resnet50.onnx): the ensemble is a weighted mean of the members' temperature-scaled probabilities,
each member in its own view (results/models/ensemble.json), which a single graph could not express;
load them with fer_core.inference.onnx_cache.load_onnx_model per name.

Each fp32 export is checked against PyTorch on real faces before it is put in place (max |dp| of
the softmax probabilities <= 1e-4 and the same argmax on every face); a failed check leaves no file.
int8 (ONNX Runtime static quantization, QDQ, calibrated on stratified train faces:
fer_core/inference/onnx_int8.py) is checked by its val accuracy against the fp32 model's instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..classes import CLASSES, NUM_CLASSES
from ..data.augment import MEAN, STD
from ..paths import PROJECT_ROOT
from ..runs.checkpoint import file_sha256
from .registry import ModelRef

FORMAT_VERSION = "2"  # the export code's version: bump it when what this module writes changes
OPSET = 20  # the ONNX opset of every export (torch.onnx.export's opset_version)
INPUT_NAME, OUTPUT_NAME = "input", "logits"
CHECK_FACES = 256  # real val faces each export is checked on
MAX_PROB_DIFF = 1e-4  # max |p_onnx - p_torch| allowed
SAMPLE_DATA = PROJECT_ROOT / "data" / "fer2013_sample.csv.gz"  # real faces bundled with the repo


class ExportError(RuntimeError):
    """An export that failed its check (nothing was written)."""


def default_data() -> Path | None:
    """FER2013_DIR, else ../shared/data/fer2013 beside the checkout, if it exists."""
    path = Path(os.environ.get("FER2013_DIR", PROJECT_ROOT.parent / "shared" / "data" / "fer2013"))
    return path if path.exists() else None


# ----------------------------------------------------------------------------- the runtime side


def _session(path: str | os.PathLike, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(torch.nn.Module):
    """An ONNX Runtime session with a torch model's interface (CPU).

    forward(x): float [N, 1, 48, 48], normalised as to_model_input makes it (any memory format,
    any float dtype) -> float32 logits [N, 7] as a torch tensor on x's device. So predict_probs,
    ensemble_probs (and with them TTA, fer-eval, fer-predict and the pages) take it as it is.
    `metadata` is the file's fer.* metadata; `name`/`config` are those of the source model.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.threads = threads
        self.session = _session(self.path, threads)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = self.metadata.get("fer.architecture", "onnx")
        self.config = json.loads(self.metadata.get("fer.model_config", "{}"))
        self.precision = self.metadata.get("fer.precision", "fp32")
        self.checkpoint_info = {
            "run_id": self.metadata.get("fer.source_run_id") or None,
            "epoch": _int_or_none(self.metadata.get("fer.source_epoch")),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
        return torch.from_numpy(logits).to(x.device)

    def extra_repr(self) -> str:
        return f"{self.path.name}, {self.precision}, threads={self.threads or 'ort default'}"

    def __getstate__(self):  # a session does not pickle; rebuild it from the file
        state = self.__dict__.copy()
        state.pop("session", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.session = _session(self.path, self.threads)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_metadata(path: str | os.PathLike) -> dict:
    """The fer.* metadata of an exported file, with the JSON-valued ones decoded."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    out = dict(props)
    for key in ("fer.classes", "fer.input_shape", "fer.model_config", "fer.int8"):
        if key in out:
            out[key] = json.loads(out[key])
    return out


# ----------------------------------------------------------------------------- export


def source_metadata(model: ModelRef) -> dict[str, str]:
    """The fer.* metadata of a resolved model: its name, the view its card chose, its weights."""
    from ..runs.checkpoint import read_checkpoint_metadata

    meta = read_checkpoint_metadata(model.weights)
    info = meta["info"]
    return {
        "fer.name": model.name,
        "fer.tta": model.view,
        "fer.architecture": meta["model"],
        "fer.model_config": json.dumps(meta["config"]),
        "fer.source_run_id": str(info.get("run_id") or ""),
        "fer.source_epoch": "" if info.get("epoch") is None else str(info["epoch"]),
        "fer.weights_file": model.weights.name,
        "fer.weights_sha256": file_sha256(model.weights),
    }


def format_metadata(source: dict[str, str], precision: str = "fp32") -> dict[str, str]:
    """Every metadata_props entry of an exported file (strings only)."""
    return {
        "fer.format_version": FORMAT_VERSION,
        "fer.classes": json.dumps(list(CLASSES)),
        "fer.input_name": INPUT_NAME,
        "fer.input_shape": json.dumps(["N", 1, 48, 48]),
        "fer.input_dtype": "float32",
        "fer.input_layout": "NCHW, 1 channel grayscale, 48x48, batch N dynamic",
        "fer.input_scale": repr(1 / 255),
        "fer.input_mean": repr(MEAN),
        "fer.input_std": repr(STD),
        "fer.input": (
            f"float32 [N,1,48,48] already normalised: x = (pixel_uint8 / 255 - {MEAN}) / {STD} "
            "(fer_core.data.augment.to_model_input); the graph does no normalisation"
        ),
        "fer.output_name": OUTPUT_NAME,
        "fer.output": f"logits float32 [N,{NUM_CLASSES}] in fer.classes order (not probabilities: apply softmax "
        "over axis 1)",
        "fer.tta_note": "fer.tta is the test-time view the model card chose (none | flip | tencrop), taken of the "
        "normalised input; probabilities are averaged over the views",
        "fer.precision": precision,
        "fer.exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=True)",
        **source,
    }


def _export_graph(model: torch.nn.Module, path: Path) -> None:
    """torch.onnx.export (dynamo) with a dynamic batch axis, quietly."""
    model = model.cpu().eval().to(memory_format=torch.contiguous_format)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (torch.zeros(2, 1, 48, 48),),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            optimize=True,
            verbose=False,
            external_data=False,
        )
    program.save(str(path))


def write_metadata(path: Path, metadata: dict[str, str], doc: str) -> None:
    """Replaces a file's metadata_props and doc string (and drops the nodes' own metadata)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for node in proto.graph.node:  # the exporter's stack traces name this machine's paths
        del node.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=str(value))
    proto.doc_string = doc
    onnx.save(proto, str(path))


@dataclass
class CheckResult:
    faces: int
    max_prob_diff: float
    argmax_same: int
    limit: float = MAX_PROB_DIFF

    @property
    def ok(self) -> bool:
        return self.max_prob_diff <= self.limit and self.argmax_same == self.faces

    def __str__(self) -> str:
        return (
            f"max |p_onnx - p_torch| {self.max_prob_diff:.2e} (limit {self.limit:.0e}), same argmax on "
            f"{self.argmax_same}/{self.faces} faces"
        )


def compare_with_torch(
    model: torch.nn.Module, onnx_model: torch.nn.Module, images: np.ndarray, max_diff: float = MAX_PROB_DIFF
) -> CheckResult:
    """Softmax probabilities of both on uint8 faces [N, 48, 48] (no TTA, fp32), through predict_probs."""
    from .probabilities import predict_probs

    reference = predict_probs(model, images)[0]
    probs = predict_probs(onnx_model, images)[0]
    return CheckResult(
        len(images),
        float(np.abs(probs - reference).max()),
        int((probs.argmax(1) == reference.argmax(1)).sum()),
        max_diff,
    )


def export_model(
    model: torch.nn.Module,
    out: str | os.PathLike,
    metadata: dict[str, str],
    check: np.ndarray | None,
    max_diff: float = MAX_PROB_DIFF,
) -> CheckResult | None:
    """Export `model` (fp32) to `out` with the fer.* metadata; with `check` (uint8 faces), compare it to
    PyTorch first (max |dp| <= max_diff, same argmax on every face) and raise ExportError, leaving
    nothing at `out` (not even a temporary file), if it does not match."""
    out = Path(out)
    result = None

    def write(tmp: Path) -> None:
        nonlocal result
        _export_graph(model, tmp)
        write_metadata(
            tmp,
            format_metadata(metadata),
            f"fer-lab {metadata.get('fer.name')}: "
            + format_metadata(metadata)["fer.input"]
            + "; "
            + format_metadata(metadata)["fer.output"],
        )
        if check is not None:
            result = compare_with_torch(model, OnnxModel(tmp), check, max_diff)
            if not result.ok:
                raise ExportError(f"{out.name}: the ONNX model does not match PyTorch: {result}")

    atomic_write(out, write)
    return result


def sample_faces() -> np.ndarray:
    """The real val faces bundled with the repo (140), for the cache export's check; an installed
    package has no data/ folder, so there 64 fixed random images check the same arithmetic."""
    from ..data.fer2013 import load_dataset

    if not SAMPLE_DATA.is_file():
        return np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    return load_dataset(SAMPLE_DATA).splits["val"].images


def check_faces(data: str | os.PathLike, n: int = CHECK_FACES) -> np.ndarray:
    """n stratified val faces (seed 0) of a dataset."""
    from ..data.fer2013 import load_dataset, stratified_indices

    val = load_dataset(data).splits["val"]
    return val.images[stratified_indices(val.labels, n, seed=0)]
