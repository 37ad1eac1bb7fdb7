"""Tiny synthetic datasets of every kind, for dry runs of techniques (a few dozen rows, three classes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scribbles.core import Dataset

#: The per-row shape of each data kind in the synthetic datasets.
SHAPES: dict[str, tuple[int, ...]] = {"tabular": (4,), "sequence": (8, 2), "image": (1, 4, 4)}
N_CLASSES = 3


def synthetic_frame(kind: str = "tabular", rows: int = 48, groups: int = 8, seed: int = 0) -> pd.DataFrame:
    """A frame with target ``y`` (3 balanced classes), group ``g``, hourly time ``t`` and features ``f0``...

    Groups are contiguous blocks of rows in time order, so grouped and time-ordered splitters both
    have something meaningful to do. The features carry the class (plus noise), so a model can learn.
    """
    if kind not in SHAPES:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(SHAPES)}")
    rng = np.random.default_rng(seed)
    y = np.arange(rows) % N_CLASSES
    width = int(np.prod(SHAPES[kind]))
    features = rng.normal(size=(rows, width)) + y[:, None]
    frame = pd.DataFrame(features.astype(np.float32), columns=[f"f{i}" for i in range(width)])
    frame.insert(0, "y", y)
    frame.insert(1, "g", [f"g{i * groups // rows}" for i in range(rows)])
    frame.insert(2, "t", pd.date_range("2024-01-01", periods=rows, freq="h"))
    return frame


def synthetic_dataset(kind: str = "tabular", rows: int = 48, groups: int = 8, seed: int = 0) -> Dataset:
    """``synthetic_frame`` as a Dataset with target ``y``, group ``g`` and time ``t``."""
    frame = synthetic_frame(kind, rows, groups, seed)
    features = [c for c in frame.columns if c.startswith("f")]
    return Dataset(frame=frame, target="y", features=features, group="g", time="t",
                   version=f"synthetic-{kind}-{rows}-{seed}", kind=kind,  # type: ignore[arg-type]
                   shape=SHAPES[kind], source="synthetic")
