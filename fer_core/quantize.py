"""int8 inference for the convolutional models, for CPUs without fast bf16.

On such a CPU (AVX2 only) the fp32 models already run near its matmul peak, so only
less arithmetic precision makes them faster: int8 convolutions (PyTorch's FX graph-mode
post-training quantization, x86 backend) run stcnn about 2x faster with val accuracy
unchanged. Post-training quantization needs the range of every activation, which a
calibration pass over real faces measures once, when a model is shipped; the ranges are
kept as a few numbers in `results/models/<name>.int8.json`, so loading needs no data.

The ranges come from a histogram observer (it clips rare outliers, which min/max would
let stretch the scale); stored as the [min, max] that give a min/max observer the same
scale and zero point, so loading replays them exactly. The ST-CNN's spatial transformer
(a 6-number affine and a bilinear sampler) stays in fp32; its classifier is quantized.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch.ao.quantization import (HistogramObserver, MinMaxObserver, QConfig, QConfigMapping,
                                   default_per_channel_weight_observer, quantize_fx)

from .models.cnn import STCNN, DeepCNN

# Not resnet50: quantized the same way it lost 7 points of val accuracy (0.648 -> 0.574), and
# the ViT's attention has no int8 kernels here.
QUANTIZABLE = ("stcnn", "cnn")
_ACTIVATION = {"calibrate": HistogramObserver, "replay": MinMaxObserver}


def _mapping(kind: str) -> QConfigMapping:
    # reduce_range: 7-bit activations, which x86's int8 kernels need to avoid overflow without VNNI
    activation = _ACTIVATION[kind].with_args(dtype=torch.quint8, reduce_range=True)
    return QConfigMapping().set_global(QConfig(activation=activation, weight=default_per_channel_weight_observer))


def _quantized_part(model: torch.nn.Module) -> tuple[torch.nn.Module, callable]:
    """The submodule that becomes int8 and what its input is: the ST-CNN's classifier sees the
    transformed face, every other quantizable model is quantized whole."""
    if isinstance(model, STCNN):
        return model.classifier, lambda x: model.transform(x).contiguous()
    if isinstance(model, DeepCNN):
        return model, lambda x: x
    raise ValueError(f"int8 needs one of {', '.join(QUANTIZABLE)} (got {type(model).__name__})")


def _prepare(model: torch.nn.Module, kind: str):
    part, inputs = _quantized_part(model)
    with warnings.catch_warnings():  # torch.ao's notice that it will move to torchao
        warnings.simplefilter("ignore")
        prepared = quantize_fx.prepare_fx(copy.deepcopy(part).eval(), _mapping(kind),
                                          (torch.zeros(1, 1, 48, 48),))
    return prepared, inputs


def calibrate(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> dict[str, list[float]]:
    """Activation ranges {observer name: [min, max]} measured on normalized faces [N, 1, 48, 48]."""
    prepared, inputs = _prepare(model, "calibrate")
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            prepared(inputs(images[start:start + batch_size].float()))
    ranges = {}
    for name, observer in prepared.named_modules():
        if isinstance(observer, HistogramObserver):
            scale, zero_point = (float(v) for v in observer.calculate_qparams())
            ranges[name] = [(observer.quant_min - zero_point) * scale, (observer.quant_max - zero_point) * scale]
    return ranges


def quantize(model: torch.nn.Module, ranges: dict[str, list[float]]) -> torch.nn.Module:
    """An int8 copy of the model (CPU only) with the calibrated activation ranges."""
    model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    prepared, _ = _prepare(model, "replay")
    observers = {name: m for name, m in prepared.named_modules() if isinstance(m, MinMaxObserver)}
    if set(observers) != set(ranges):
        raise ValueError(f"the int8 ranges do not fit this model ({len(ranges)} ranges, {len(observers)} "
                         "activations): calibrate it again with scripts/ship_model.py --int8")
    for name, (low, high) in ranges.items():
        observers[name].min_val.fill_(low)
        observers[name].max_val.fill_(high)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = quantize_fx.convert_fx(prepared)
    if isinstance(model, STCNN):
        model.classifier = converted
        return model
    return converted
