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
from pandas.core.algorithms import factorize_array

from .contracts import Dataset
from .errors import BadInput

#: Integer ids spanning at most this many values (or 2x the rows) are coded by a direct table, no hashing.
_DENSE_SPAN = 1 << 16


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
    scikit-learn's); without it they follow first appearance.
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
    if span > max(_DENSE_SPAN, 2 * len(values)):
        return None
    shifted = (values - low if low else values).astype(np.intp, copy=False)
    present = np.bincount(shifted, minlength=span) > 0
    remap = np.cumsum(present, dtype=np.int64) - 1
    count = int(remap[-1]) + 1
    table = remap.astype(np.int32) if count < 2**31 else remap
    return table[shifted], count


def _arrow_codes(array: object, sort: bool) -> tuple[np.ndarray, int]:
    """Codes of an Arrow-backed column through Arrow's own hash table (pandas' goes through Python)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunked = array._pa_array if hasattr(array, "_pa_array") else pa.chunked_array([pa.array(array)])
    # One chunk (the usual case) is read in place; several are joined first so codes share one dictionary.
    values = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    fixed = _fixed_width_codes(values, sort)
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


#: Words of 8 bytes a fixed-width string may span for the fast path (64 bytes); longer ids go to Arrow.
_MAX_WORDS = 8
#: Rows per block in the passes after hashing (8 MB of int64, within a core's share of cache).
_BLOCK = 1 << 20
_U64 = np.uint64
#: Odd multipliers of the word hash (the golden ratio's and splitmix64's); any odd constants would do.
_MIX_A, _MIX_B = _U64(0x9E3779B97F4A7C15), _U64(0xBF58476D1CE4E5B9)


def _fixed_width_codes(values: object, sort: bool) -> tuple[np.ndarray, int] | None:
    """Codes of an Arrow string column whose values all have one byte length, or None for any other.

    Ids are usually fixed width (zero-padded numbers, UUIDs, codes), and then the data buffer is an
    (n, width) byte matrix: its 8-byte words are read in place as strided views, hashed into one uint64
    per row with a few vectorised passes and factorised by pandas' integer hash table, about 2x faster
    than Arrow's string hash table. Exact, not probabilistic: up to 8 bytes the hash is a bijection of
    the bytes; above that rows are checked against a row of their code, and a collision (about 1 in
    10^9 for 100k ids) hands the column back to Arrow.
    """
    import pyarrow as pa

    n = len(values)
    if n == 0 or values.null_count or values.type not in (pa.string(), pa.large_string(), pa.binary(),
                                                           pa.large_binary()):
        return None
    _, offset_buffer, data_buffer = values.buffers()
    offset_type = np.int64 if values.type in (pa.large_string(), pa.large_binary()) else np.int32
    itemsize = np.dtype(offset_type).itemsize
    offsets = np.frombuffer(offset_buffer, dtype=offset_type, count=n + 1, offset=values.offset * itemsize)
    start, total = int(offsets[0]), int(offsets[-1] - offsets[0])
    width = total // n
    if width == 0 or width * n != total or width > 8 * _MAX_WORDS:
        return None
    lengths = np.diff(offsets)
    if lengths.min() != width or lengths.max() != width:
        return None
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    if width < 8:
        # Too short to read a word in place: copy into zero-padded words (little-endian, so low bytes).
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :width] = data[start : start + total].reshape(n, width)
        words = [padded.view("<u8").ravel()]
    else:
        # Words at 0, 8, ... and one ending at the last byte (it may overlap the one before): no copies.
        positions = [*range(0, width - 8, 8), width - 8]
        words = [np.ndarray((n,), dtype="<u8", buffer=data, offset=start + at, strides=(width,)) for at in positions]
    # h = ((w0 * A) ^ w1) * B ^ w2) * B ...: a product's high bits depend on all of a word's bits but
    # its low bits only on the low ones (often a shared prefix), and pandas' hash table picks buckets
    # by the low bits; a byte swap (one pass) puts the well-mixed ones there. Without it "subject-000123"
    # ids fill 4k of 262k buckets and probing is the cost.
    hashed = np.multiply(words[0], _MIX_A)
    for word in words[1:]:
        hashed ^= word
        hashed *= _MIX_B
    hashed.byteswap(inplace=True)
    # pd.factorize sizes its hash table for n distinct values (200 MB for 10M rows, a cache miss per
    # row); ids repeat, so start at 256k slots (3 MB) and let the table grow if there are more.
    codes, uniques = factorize_array(hashed, size_hint=min(n, 1 << 18))
    del hashed
    count = len(uniques)
    # Blocks of rows keep the temporaries in cache: these passes cost a third of what whole arrays do.
    blocks = [(at, min(at + _BLOCK, n)) for at in range(0, n, _BLOCK)]
    some_row = np.empty(count, dtype=np.intp)  # one row of each code (which one does not matter)
    for start_row, end_row in blocks:
        some_row[codes[start_row:end_row]] = np.arange(start_row, end_row, dtype=np.intp)
    # Each step is a bijection of the word for a given hash so far, and of the hash so far for a given
    # word: two rows with the same hash and the same words but the last have the same last word too.
    # So checking all words but the last against the code's row proves the codes exact.
    for word in words[:-1]:
        table = word[some_row]
        for start_row, end_row in blocks:
            if not np.array_equal(table[codes[start_row:end_row]], word[start_row:end_row]):
                return None
    small = np.int32 if count < 2**31 else np.int64
    if sort:
        import pyarrow.compute as pc

        # Sorting the k distinct strings (Arrow's byte order, as before) and ranking them; not the n rows.
        order = np.asarray(pc.sort_indices(values.take(pa.array(some_row))))
        rank = np.empty(count, dtype=small)
        rank[order] = np.arange(count, dtype=small)
        return rank[codes], count
    return codes.astype(small), count


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
            f"data.{role}: column {column!r} has {len(missing)} missing values of {len(codes)} rows "
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
        try:
            parsed = pd.to_datetime(series)
        except (ValueError, TypeError) as exc:
            raise BadInput(
                f"data.time: column {name!r} cannot be read as timestamps ({str(exc).splitlines()[0]}); "
                f"use ISO dates like 2026-01-31 12:00"
            ) from None
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        nat = parsed.isna().to_numpy()
        _no_missing(np.where(nat, -1, 0), name, "time")
        values = parsed.to_numpy().astype("datetime64[ns]").view(np.int64)
        is_datetime = True
    steps, unique = pd.factorize(values, sort=True)
    return Times(values, is_datetime, np.asarray(unique), np.asarray(steps, dtype=np.int64))
