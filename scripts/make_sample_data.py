"""Build the bundled FER2013 sample (`data/fer2013_sample.csv.gz`) from the full dataset.

A stratified pick of real FER2013 faces - 80 per class from the Training split and 20
per class from PublicTest (fewer where a class has fewer) - in the Kaggle CSV format,
so that training, the dashboard and the tests work out of the box.

    python scripts/make_sample_data.py ../shared/data/fer2013 data/fer2013_sample.csv.gz
"""

import sys

import numpy as np

from fer_core.data.fer2013 import Split, load_dataset, write_csv


def per_class(split: Split, n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.permutation(np.flatnonzero(split.labels == c))[:n] for c in range(7)])
    return split.subset(np.sort(index))


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    dataset = load_dataset(source)
    write_csv(
        {"train": per_class(dataset.splits["train"], 80, 0), "val": per_class(dataset.splits["val"], 20, 1)}, target
    )
    print(f"wrote {target}")
