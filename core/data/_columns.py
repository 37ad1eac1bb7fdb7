"""The columns that splitters and the leakage guard read: groups, classes and times.

Groups and classes are factorised into dense integer codes once, with pandas or Arrow hash tables
(``np.unique`` sorts every row and is 7x-37x slower on large data); everything after that is
vectorised NumPy on the codes. Bad columns (missing, with gaps, unreadable) are ``BadInput`` naming
the config field and the numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..contracts import Dataset
from ._direct_table import codes_of_keys, max_span
from ..errors import BadInput
from ._fixed_width import fixed_width_codes
from ..yaml_reader import counted


def parse_span(value: int | str | None, field: str = "split.gap") -> int | pd.Timedelta:
    """A row count (int, or a string of digits) or a duration such as ``"7D"`` or ``"12h"``.

    Raises ``ValueError`` naming ``field`` for anything else, or a negative amount.
    """
    where = f"{field}: " if field else ""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"{where}{value!r} is neither a row count nor a duration like '7D'")
    if isinstance(value, int | np.integer):
        if value < 0:
            raise ValueError(f"{where}{value} is negative; give a row count >= 0 or a duration like '7D'")
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        span = pd.Timedelta(text)
    except ValueError:
        span = pd.NaT
    # pd.Timedelta("7") is 7 ns, not 7 rows; a duration must name its unit.
    if span is pd.NaT or not any(ch.isalpha() for ch in text):
        raise ValueError(f"{where}{value!r} is neither a row count nor a duration like '7D' or '12h'")
    if span < pd.Timedelta(0):
        raise ValueError(f"{where}{value!r} is negative; give a duration like '7D'")
    return span


def factorize(values: pd.Series | np.ndarray, sort: bool = True) -> tuple[np.ndarray, int]:
    """Dense codes ``0..k-1`` (``-1`` where a value is missing) and ``k``.

    With ``sort`` the codes follow the sorted values (``np.unique``'s order, so folds match
    scikit-learn's); without it they follow first appearance. The codes may be a read-only view of
    the column itself (integer ids that fill their range); copy them before writing.
    """
    if isinstance(values, pd.Series):
        values = values.to_numpy() if isinstance(values.dtype, np.dtype) else values.array
    if isinstance(values, pd.Categorical):
        # Already coded (a category column, or dictionary-encoded Parquet): no hashing at all.
        codes, count = np.asarray(values.codes), len(values.categories)
        if sort and not values.categories.is_monotonic_increasing:
            order = np.argsort(np.asarray(values.categories), kind="stable")
            rank = np.empty(count, dtype=codes.dtype)
            rank[order] = np.arange(count, dtype=codes.dtype)
            codes = np.where(codes >= 0, rank[codes], -1)
        used = np.bincount(codes[codes >= 0], minlength=count) > 0
        if not used.all():  # unused categories are no groups: renumber densely
            remap = np.cumsum(used) - 1
            codes, count = np.where(codes >= 0, remap[codes], -1), int(used.sum())
        return codes, count
    array = values
    dtype = getattr(array, "dtype", None)
    if sort and isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(array):
        codes = _dense_int_codes(np.asarray(array))
        if codes is not None:
            return codes
    if isinstance(array, pd.arrays.ArrowStringArray) or str(dtype).endswith("[pyarrow]"):
        return _arrow_codes(array, sort)
    codes, uniques = pd.factorize(array, sort=sort, use_na_sentinel=True)
    return np.asarray(codes), len(uniques)


def _dense_int_codes(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Codes of integer ids through a lookup table over their range, when that range is small."""
    low, high = int(values.min()), int(values.max())
    span = high - low + 1
    if span > max_span(len(values)):
        return None
    shifted = (values - low if low else values).astype(np.intp, copy=False)
    return codes_of_keys(shifted, np.bincount(shifted, minlength=span) > 0)


def _arrow_codes(array: object, sort: bool) -> tuple[np.ndarray, int]:
    """Codes of an Arrow-backed column through Arrow's own hash table (pandas' goes through Python)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunked = array._pa_array if hasattr(array, "_pa_array") else pa.chunked_array([pa.array(array)])
    # One chunk (the usual case) is read in place; several are joined first so codes share one dictionary.
    values = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    fixed = fixed_width_codes(values, sort)
    if fixed is not None:
        return fixed
    encoded = values.dictionary_encode()
    dictionary = encoded.dictionary
    codes = encoded.indices.to_numpy(zero_copy_only=False)  # int32, no copy without nulls
    missing = encoded.indices.null_count > 0
    if missing:
        codes = np.where(encoded.indices.is_valid().to_numpy(zero_copy_only=False), codes, -1)
    if sort and len(dictionary):
        order = np.asarray(pc.sort_indices(dictionary))
        rank = np.empty(len(order), dtype=codes.dtype)
        rank[order] = np.arange(len(order), dtype=codes.dtype)
        codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1) if missing else rank[codes]
    return codes, len(dictionary)


#: Codes already made inside ``shared_codes()``: (frame, column, sort) -> (frame, codes, count).
_SHARED: ContextVar[dict[tuple[int, str, bool], tuple[pd.DataFrame, np.ndarray, int]] | None] = ContextVar(
    "scribbles_shared_codes", default=None
)


@contextmanager
def shared_codes() -> Iterator[None]:
    """Within this block each column of a frame is factorised once, e.g. by the splitter and then the guard.

    Scoped to a block rather than cached on the data, so codes never outlive it and a frame edited
    afterwards is read afresh. Callers treat the codes as read-only.
    """
    if _SHARED.get() is not None:  # nested: the outer block's cache serves
        yield
        return
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def column_codes(frame: pd.DataFrame, column: str, sort: bool = True) -> tuple[np.ndarray, int]:
    """``factorize(frame[column], sort)``, made once per ``shared_codes()`` block."""
    cache = _SHARED.get()
    if cache is None:
        return factorize(frame[column], sort=sort)
    key = (id(frame), column, sort)
    hit = cache.get(key)
    if hit is None or hit[0] is not frame:  # the frame is held, so its id is not reused meanwhile
        codes, count = factorize(frame[column], sort=sort)
        codes.flags.writeable = False  # shared with the guard: an in-place edit would corrupt its check
        hit = cache[key] = (frame, codes, count)
    return hit[1], hit[2]


def _column(dataset: Dataset, column: str, role: str) -> pd.Series:
    frame = dataset.frame
    if column not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:12])) + (" ..." if len(frame.columns) > 12 else "")
        raise BadInput(f"data.{role}: column {column!r} is not in the data; columns: {shown}")
    return frame[column]


def _no_missing(codes: np.ndarray, column: str, role: str) -> None:
    if codes.min(initial=0) >= 0:
        return
    missing = np.flatnonzero(codes < 0)
    if len(missing):
        raise BadInput(
            f"data.{role}: column {column!r} has {counted(len(missing), 'missing value')} of {len(codes)} rows "
            f"(first at row {int(missing[0])}); fill or drop them before splitting"
        )


def group_codes(dataset: Dataset, splitter: str) -> tuple[np.ndarray, int]:
    """Dense codes of the group column in sorted group order, and the number of groups."""
    if not dataset.group:
        raise BadInput(
            f"data.group: splitter '{splitter}' keeps every group on one side and needs data.group, "
            f"the column naming each row's group (a subject, a car); set data.group or pick kfold"
        )
    _column(dataset, dataset.group, "group")  # BadInput naming the columns when it is not there
    codes, count = column_codes(dataset.frame, dataset.group)
    _no_missing(codes, dataset.group, "group")
    return codes, count


def class_codes(dataset: Dataset, splitter: str, sort: bool = True) -> tuple[np.ndarray, int]:
    """Dense codes of the target's classes (sorted, or in order of appearance) and their number."""
    column = _column(dataset, dataset.target, "target")
    if column.dtype.kind == "f" and not np.all(np.mod(column.dropna().to_numpy(), 1) == 0):
        raise BadInput(
            f"data.target: splitter '{splitter}' stratifies by class, but column {dataset.target!r} holds "
            f"continuous values; use a class label column or a splitter that does not stratify"
        )
    codes, count = factorize(column, sort=sort)
    _no_missing(codes, dataset.target, "target")
    return codes, count


@dataclass
class Times:
    """The time column as int64 per row (nanoseconds for datetimes), with its distinct steps."""

    values: np.ndarray
    is_datetime: bool
    #: Sorted distinct times; ``steps[i]`` is row i's position among them.
    unique: np.ndarray
    steps: np.ndarray

    def label(self, value: int) -> str:
        """A time for messages: a timestamp for datetimes, else the number."""
        return str(pd.Timestamp(int(value))) if self.is_datetime else str(value)

    def span(self, amount: int | pd.Timedelta, field: str) -> int:
        """A duration in this column's units; a plain number of steps is the caller's business."""
        if not self.is_datetime:
            raise BadInput(
                f"{field}: a duration ({amount}) needs a datetime time column; data.time holds numbers, "
                f"so give a count of time steps instead"
            )
        return int(pd.Timedelta(amount).value)


def to_instants(series: pd.Series, where: str) -> pd.Series:
    """Timestamps as UTC instants: ``+01:00`` and ``+02:00`` around a daylight-saving switch are two
    increasing instants, not "mixed time zones"; timestamps without an offset are read as UTC. Missing
    values stay NaT.

    Raises BadInput naming ``where`` (``column 'ts' in data.csv``) when a value is not a timestamp.
    """
    try:
        return pd.to_datetime(series, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadInput(f"data.time: {where} holds values that are not timestamps "
                       f"({' '.join(str(exc).split())[:120]}); use ISO dates like 2026-01-31T12:00:00") from None


def read_times(dataset: Dataset, column: str | None = None) -> Times:
    """The time column (``dataset.time`` unless ``column``) read as datetimes or numbers."""
    name = column or dataset.time
    if not name:
        raise BadInput("data.time: this needs data.time, the column holding each row's timestamp")
    series = _column(dataset, name, "time")
    if series.dtype.kind in "iuf":
        if series.isna().any():
            _no_missing(np.where(series.isna().to_numpy(), -1, 0), name, "time")
        values = series.to_numpy()
        is_datetime = False
    else:
        # UTC instants as naive datetimes, ordered as the instants
        parsed = to_instants(series, f"column {name!r}").dt.tz_localize(None)
        nat = parsed.isna().to_numpy()
        _no_missing(np.where(nat, -1, 0), name, "time")
        values = parsed.to_numpy().astype("datetime64[ns]").view(np.int64)
        is_datetime = True
    steps, unique = pd.factorize(values, sort=True)
    return Times(values, is_datetime, np.asarray(unique), np.asarray(steps, dtype=np.int64))
