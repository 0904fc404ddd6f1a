"""Reading the Parquet files of runs (metrics/, confusion/, predictions/: runstore.py's layout)
for RunStore. A file is read once per version and kept as Arrow, so that a live page re-reads
only what changed; the files of a view are joined as Arrow and made one pandas frame at once,
since a run has a file per epoch and pandas costs milliseconds per frame."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_parquet_cache: dict[str, tuple[tuple, pa.Table]] = {}


def file_version(info: dict) -> tuple:
    """What changes when a file is rewritten: content hash on object stores, mtime locally."""
    return (info.get("ETag") or info.get("mtime") or info.get("LastModified"), info.get("size"))


def finished_parquet(entries: list[dict]) -> list[dict]:
    """The finished Parquet files of a folder listing, by name (temporary names start with a dot)."""
    files = [e for e in entries if e["type"] == "file"]
    return sorted(
        (e for e in files if e["name"].endswith(".parquet") and not e["name"].rsplit("/", 1)[-1].startswith(".")),
        key=lambda e: e["name"],
    )


def one_epoch(entries: list[dict], wanted: int | None) -> list[dict]:
    """The epoch file of epoch `wanted` among a run's files, else (None) its newest."""
    entries = [e for e in entries if "/epoch_" in e["name"]]
    return [e for e in entries if e["name"].endswith(f"/epoch_{wanted:04d}.parquet")] if wanted else entries[-1:]


def read_table(fs, entry: dict, local: bool) -> pa.Table:
    """The file of a listing `entry` on filesystem `fs`, from the cache while it is unchanged
    (ParquetFile.read: a fraction of pd.read_parquet's cost per small file)."""
    key = f"{fs.protocol}|{entry['name']}"
    hit = _parquet_cache.get(key)
    if hit and hit[0] == file_version(entry):
        return hit[1]
    table = pq.ParquetFile(entry["name"] if local else io.BytesIO(fs.cat_file(entry["name"]))).read()
    _parquet_cache[key] = (file_version(entry), table)
    return table


def as_frame(tables: list[pa.Table]) -> pd.DataFrame:
    """The tables as one frame (empty for none)."""
    if not tables:
        return pd.DataFrame()
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column whose types no promotion unifies
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)
