"""Dense codes of small integer keys through a table over their range: no hashing, no sort.

Integer ids and the packed keys of fixed-width string ids both end here. A key range up to
``max_span(n)`` costs one presence table and one gather, and the codes follow the keys' order.
"""

from __future__ import annotations

import numpy as np

#: Key ranges up to this many values (or 2x the rows, if more) are coded by a table.
_MIN_SPAN = 1 << 16


def max_span(rows: int) -> int:
    """The largest key range a table codes for ``rows`` rows (tables beyond it cost more than hashing)."""
    return max(_MIN_SPAN, 2 * rows)


def codes_of_keys(keys: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes ``0..k-1`` of intp ``keys`` in ``0..len(present)-1``, in key order; ``present`` marks the keys used.

    When every key in the range occurs (ids 0..k-1 or 1..k, the usual case) the keys are the codes and
    no gather is needed; they may be a frame's own array, so they go out as a read-only view.
    """
    if present.all():
        codes = keys.view()
        codes.flags.writeable = False
        return codes, len(present)
    remap = np.cumsum(present, dtype=np.int64) - 1
    count = int(remap[-1]) + 1
    return np.take(remap.astype(np.int32) if count < 2**31 else remap, keys), count
