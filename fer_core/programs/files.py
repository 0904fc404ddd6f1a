"""Files in, results out: images and videos, folders of them and object-store prefixes.

What fer-predict does per file, in one place, so that its single process and its Ray actors
(fer_core/programs/ray_predict.py) give a file the same result, and `--out` the same rows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

from ..data.fer2013 import IMAGE_SUFFIXES
from ..faces.detection import ImageError
from ..faces.video import VIDEO_SUFFIXES, VideoError, predict_video, result_rows

OUT_SUFFIXES = (".csv", ".parquet")


def expand_inputs(args: list[str]) -> tuple[list[str], list[str]]:
    """The files to process, folders searched recursively for images and videos, and notes on
    what was skipped. Files named on the command line are always tried, and keep their spelling."""
    files, notes = [], []
    for arg in args:
        if "://" in arg:  # an object-store prefix (fer-predict --ray)
            files += expand_uri(arg, (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))
            continue
        path = Path(arg)
        if not path.is_dir():
            files.append(arg)
            continue
        found = sorted(p for p in path.rglob("*") if p.is_file())
        media = {p for p in found if p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)}
        files += [str(p) for p in found if p in media]
        skipped = [p.relative_to(path).as_posix() for p in found if p not in media]
        if skipped:
            notes.append(
                f"{path}: skipped {len(skipped)} file(s) that are neither images nor videos: "
                + ", ".join(skipped[:5])
                + (", ..." if len(skipped) > 5 else "")
            )
    return files, notes


def expand_uri(uri: str, suffixes: tuple[str, ...]) -> list[str]:
    """The images and videos under an object-store prefix, as full URIs, sorted."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    protocol = uri.split("://", 1)[0]
    return sorted(f"{protocol}://{p}" for p in fs.find(root) if Path(p).suffix.lower() in suffixes)


@contextlib.contextmanager
def local_copy(path: str):
    """A local file for a URI (video decoders want one); a local path as it is."""
    if "://" not in path:
        yield path
        return
    import fsspec

    fd, local = tempfile.mkstemp(suffix=Path(path).suffix.lower())
    try:
        with os.fdopen(fd, "wb") as out, fsspec.open(path, "rb") as source:
            out.write(source.read())
        yield local
    finally:
        os.unlink(local)


def predict_file(recognizer, path: str, args: argparse.Namespace) -> dict:
    """One image's or video's result, as `--json` prints it (fer-predict, and its Ray workers)."""
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        return {"path": path, "tta": recognizer.tta, "faces": [f.to_dict() for f in recognizer(path)]}
    video_tta = dict.fromkeys(recognizer.models, "none" if args.tta == "auto" else args.tta)
    return predict_video(
        path,
        recognizer.batch_models(),
        video_tta,
        detector=args.detector,
        min_confidence=args.min_face_confidence,
        every=args.every,
        smooth=args.smooth,
        progress=args.progress,
        blend=recognizer.blend,
    )


def predict_one(recognizer, path: str, args: argparse.Namespace) -> dict:
    """A file's result, or its error as a result: one odd file must not end a run over a folder."""
    try:
        return predict_file(recognizer, path, args)
    except (ImageError, VideoError) as e:
        return {"path": path, "error": str(e), "faces": []}
    except Exception as e:
        return {"path": path, "error": f"{path}: failed ({type(e).__name__}: {e})", "faces": []}


def write_out(path: Path, results: list[dict]) -> int:
    """All rows at once, atomically: an interrupted or failed run leaves no half-written file."""
    import pandas as pd

    from ..atomic import atomic_write

    table = pd.concat([result_rows(r) for r in results], ignore_index=True) if results else result_rows({"path": ""})
    if path.suffix.lower() == ".csv":
        atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
    return len(table)
