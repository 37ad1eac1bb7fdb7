"""The split fingerprint: what makes two runs' folds the same folds.

Paired statistics are only valid on the same folds. A fingerprint records the three things that decide
them: the data version, the splitter with its parameters (repeats included), and a hash of the row
assignment it produced (each fold's index, train and valid positions). Runs recorded with equal
fingerprints were scored on identical folds; when they differ, ``differences`` says which part did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .contracts import Fold

#: The record keys (``RunContext.tags``, ``StoredRun.record``) that hold a fingerprint's parts, and the whole.
TAGS = {
    "data": "data_version",
    "split": "split",
    "assignment": "split_assignment",
    "fingerprint": "split_fingerprint",
}


def assignment_hash(folds: Iterable[Fold]) -> str:
    """sha256 of every fold's index and its sorted int64 train and valid positions, in fold order."""
    digest = hashlib.sha256()
    for fold in folds:
        digest.update(f"fold {fold.index}\n".encode())
        for side in (fold.train, fold.valid):
            rows = np.ascontiguousarray(side, dtype="<i8")
            digest.update(len(rows).to_bytes(8, "little"))
            digest.update(rows.tobytes())
    return digest.hexdigest()


def split_fingerprint(data_version: str, split: dict[str, Any], folds: Iterable[Fold]) -> dict[str, str]:
    """The fingerprint's parts and their combined hash, as record keys (see ``TAGS``).

    ``split``: the resolved split section (the splitter's name and every parameter, defaults included).
    """
    parts = {
        "data": data_version,
        "split": json.dumps(split, sort_keys=True, default=str),
        "assignment": assignment_hash(folds),
    }
    whole = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {TAGS[key]: value for key, value in {**parts, "fingerprint": whole}.items()}


def differences(a: Mapping[str, str], b: Mapping[str, str], ids: tuple[str, str] | None = None) -> list[str]:
    """Why the folds of two runs (their records; ``ids``, their run ids, for the advice) are not the same
    folds; empty when they are."""
    reasons = []
    if not a.get(TAGS["fingerprint"]) or not b.get(TAGS["fingerprint"]):
        side = 0 if not a.get(TAGS["fingerprint"]) else 1
        missing = ids[side] if ids else "AB"[side]
        return [f"run {missing} records no split fingerprint (it was made before scribbles recorded one); "
                f"rerun it with `scribbles rerun {missing if ids else 'RUN_ID'}`"]
    if a.get(TAGS["data"]) != b.get(TAGS["data"]):
        reasons.append(f"data versions differ ({a.get(TAGS['data'], '')[:12]} vs {b.get(TAGS['data'], '')[:12]})")
    if a.get(TAGS["split"]) != b.get(TAGS["split"]):
        reasons.append(f"splitters differ ({a.get(TAGS['split'])} vs {b.get(TAGS['split'])})")
    if a.get(TAGS["assignment"]) != b.get(TAGS["assignment"]):
        reasons.append("the rows were assigned to folds differently")
    if not reasons and a[TAGS["fingerprint"]] != b[TAGS["fingerprint"]]:
        reasons.append("split fingerprints differ")
    return reasons
