"""`fer-predict --ray ADDRESS|local`: the same results and `--out` rows, for many files, on Ray Data.

One actor per CPU of the cluster, each on one thread, holds a Recognizer over the exported
(ONNX Runtime) model and runs the very `predict_file` of the single-process path, so a file
gets the same answer either way. Inputs may be local paths (on storage every node reaches) or
an object-store prefix (`s3://bucket/faces/`, any fsspec URI), which the actors read themselves.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

# What the actors need of fer-predict's options (the rest only shape the driver's output).
FILE_OPTIONS = ("tta", "every", "smooth", "detector", "min_face_confidence")


class FilePredictor:
    """A Ray Data actor: a batch of paths in, each file's result as JSON out (one schema for
    images, videos and failures alike; the driver turns results into rows as `--out` does)."""

    def __init__(self, recognizer_options: dict, file_options: dict):
        import cv2
        import torch

        from ..faces.recognizer import Recognizer

        torch.set_num_threads(1)  # one actor per core
        cv2.setNumThreads(1)
        self.recognizer = Recognizer(**recognizer_options)
        self.args = argparse.Namespace(**file_options, progress=False)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from .files import local_copy, predict_one

        results = []
        for path in batch["path"]:
            try:
                with local_copy(path) as local:  # the result names the input, not a temporary copy
                    results.append(json.dumps(predict_one(self.recognizer, local, self.args)).replace(local, path))
            except OSError as e:
                results.append(json.dumps({"path": path, "error": f"{path}: cannot read ({e})", "faces": []}))
        return pd.DataFrame({"path": batch["path"], "result": results})


def predict_on_ray(files: list[str], args: argparse.Namespace, address: str) -> list[dict]:
    """Every file's result, in the order given, computed by Ray actors."""
    import ray

    from ..faces.recognizer import Recognizer

    ray.init(
        address=None if address == "local" else address,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    ray.data.DataContext.get_current().enable_progress_bars = args.progress
    backend = "onnx" if args.backend == "auto" and not args.int8 else args.backend
    options = dict(
        model=args.model,
        tta=args.tta,
        int8=args.int8,
        backend=backend,
        detector=args.detector,
        min_face_confidence=args.min_face_confidence,
        whole_image=args.whole_image,
    )
    Recognizer(**options)  # refuses a bad model before any actor starts, and exports it once into the cache
    actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    table = (
        ray.data.from_items([{"path": f} for f in files], override_num_blocks=min(len(files), 4 * actors))
        .map_batches(
            FilePredictor,
            batch_size=4,
            batch_format="pandas",
            concurrency=actors,
            num_cpus=1,
            fn_constructor_kwargs={
                "recognizer_options": options,
                "file_options": {k: getattr(args, k) for k in FILE_OPTIONS},
            },
        )
        .to_pandas()
    )
    by_path = dict(zip(table.path, table.result, strict=True))
    return [json.loads(by_path[f]) for f in files]
