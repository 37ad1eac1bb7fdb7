"""Dense codes of fixed-width string columns (ids such as "subject-000123" or UUIDs), read in place.

Ids are usually fixed width, and then an Arrow string column's data buffer is an (n, width) byte
matrix that NumPy reads without copying. Two exact coders work on it, both several times faster than
a string hash table:

- **packed**: when few bits differ between rows (zero-padded numbers, dates, short codes), those bits
  are packed, in byte order, into an integer that indexes a direct table. No hashing, no check, and
  the codes come out in sorted order.
- **hashed**: any other width up to 64 bytes: the 8-byte words are hashed into one uint64 per row,
  factorised by pandas' integer hash table and checked against the words.

Anything else (nulls, mixed lengths, longer values) returns None and goes to Arrow's hash table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pandas.core.algorithms import factorize_array

from ._direct_table import codes_of_keys, max_span

#: Rows per block while packing: the key and the byte columns of a block stay in a core's cache.
_PACK_BLOCK = 1 << 16
#: Words of 8 bytes a fixed-width string may span for the hashed path (64 bytes); longer ids go to Arrow.
_MAX_WORDS = 8
#: Rows per block in the passes after hashing (8 MB of int64, within a core's share of cache).
_BLOCK = 1 << 20
_U64 = np.uint64
#: Odd multipliers of the word hash (the golden ratio's and splitmix64's); any odd constants would do.
_MIX_A, _MIX_B = _U64(0x9E3779B97F4A7C15), _U64(0xBF58476D1CE4E5B9)


@dataclass(frozen=True)
class _Rows:
    """n values of ``width`` bytes each, back to back in ``data`` from byte ``start``."""

    data: np.ndarray  # the whole data buffer, uint8
    start: int
    width: int
    n: int

    def at(self, offset: int, dtype: str) -> np.ndarray:
        """A strided view of the ``dtype`` value at byte ``offset`` of every row (no copy)."""
        return np.ndarray((self.n,), dtype=dtype, buffer=self.data, offset=self.start + offset,
                          strides=(self.width,))


def fixed_width_codes(values: object, sort: bool) -> tuple[np.ndarray, int] | None:
    """Codes of an Arrow string or binary array whose values all have one byte length, else None.

    With ``sort`` the codes follow the values' byte order (Arrow's and, for UTF-8, Python's order);
    without it they follow first appearance, as pandas' do.
    """
    rows = fixed_width_rows(values)
    if rows is None:
        return None
    if sort:
        packed = packed_codes(rows)
        if packed is not None:
            return packed
    if rows.width > 8 * _MAX_WORDS:
        return None
    return hashed_codes(values, rows, sort)


def fixed_width_rows(values: object) -> _Rows | None:
    """The rows of an Arrow array with no nulls and one byte length per value, else None."""
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
    if width == 0 or width * n != total:
        return None
    lengths = np.diff(offsets)
    if lengths.min() != width or lengths.max() != width:
        return None
    return _Rows(np.frombuffer(data_buffer, dtype=np.uint8), start, width, n)


def varying_bits(rows: _Rows) -> np.ndarray:
    """Per byte position of a value, the bits that are not the same in every row (uint8, ``width`` long).

    The bitwise OR and AND over all rows differ exactly in those bits. The rows are read as
    contiguous uint64 words, a whole number of rows per line of the reshaped matrix, so each reduction
    streams the buffer once instead of striding through it byte by byte.
    """
    width, n = rows.width, rows.n
    period = int(np.lcm(width, 8))  # bytes after which word and row boundaries line up again
    line = period * max(1, 4096 // period)  # a few KB per line: long inner loops, a short result
    whole = (n * width) // line * line
    either = np.zeros(width, dtype=np.uint8)
    both = np.full(width, 0xFF, dtype=np.uint8)
    if whole:
        words = np.frombuffer(rows.data, dtype="<u8", count=whole // 8, offset=rows.start).reshape(-1, line // 8)
        for reduce, out in ((np.bitwise_or.reduce, either), (np.bitwise_and.reduce, both)):
            per_line = reduce(words, axis=0).view(np.uint8).reshape(-1, width)
            out[:] = reduce(per_line, axis=0)
    tail = rows.data[rows.start + whole : rows.start + n * width].reshape(-1, width)
    if len(tail):
        either |= np.bitwise_or.reduce(tail, axis=0)
        both &= np.bitwise_and.reduce(tail, axis=0)
    return either ^ both


def packed_codes(rows: _Rows) -> tuple[np.ndarray, int] | None:
    """Sorted codes from the varying bits packed into a direct-table key, or None if there are too many.

    Every other bit is the same in all rows, so two rows are equal exactly when their keys are; bytes
    go in from first to last (most significant first) and bits keep their order within a byte, so
    keys sort as the values do.
    """
    masks = varying_bits(rows)
    fields = [(position, int(mask)) for position, mask in enumerate(masks.tolist()) if mask]
    bits = sum(mask.bit_count() for _, mask in fields)
    if 1 << bits > max_span(rows.n):
        return None
    n = rows.n
    if not fields:  # every row the same value
        return np.zeros(n, dtype=np.int32), 1
    steps = [_field_step(rows, position, mask) for position, mask in fields]
    key = np.empty(n, dtype=np.intp)
    present = np.zeros(1 << bits, dtype=np.bool_)
    part = np.empty(_PACK_BLOCK, dtype=np.uint8)
    for begin in range(0, n, _PACK_BLOCK):
        end = min(begin + _PACK_BLOCK, n)
        block, bits_of_block = key[begin:end], part[: end - begin]
        for index, (column, shift, low, lut, width) in enumerate(steps):
            if lut is not None:
                np.take(lut, column[begin:end], out=bits_of_block)
            elif shift:
                np.right_shift(column[begin:end], shift, out=bits_of_block)
                np.bitwise_and(bits_of_block, low, out=bits_of_block)
            else:
                np.bitwise_and(column[begin:end], low, out=bits_of_block)
            if index:
                np.left_shift(block, width, out=block)
                np.bitwise_or(block, bits_of_block, out=block)
            else:
                block[:] = bits_of_block
        present[block] = True  # while the block is in cache
    return codes_of_keys(key, present)


def _field_step(rows: _Rows, position: int, mask: int) -> tuple[np.ndarray, int, int, np.ndarray | None, int]:
    """How to read one byte's varying bits: (column, shift, low mask, lookup table or None, bit count).

    A run of adjacent bits (digits vary in the low 4) is a shift and a mask; scattered bits go
    through a 256-entry table that gathers them in order.
    """
    width = mask.bit_count()
    shift = (mask & -mask).bit_length() - 1
    low = (1 << width) - 1
    if mask >> shift == low:
        return rows.at(position, "u1"), shift, low, None, width
    kept = [bit for bit in range(8) if mask >> bit & 1]
    byte = np.arange(256)
    lut = np.zeros(256, dtype=np.uint8)
    for place, bit in enumerate(kept):
        lut |= ((byte >> bit & 1) << place).astype(np.uint8)
    return rows.at(position, "u1"), 0, low, lut, width


def hashed_codes(values: object, rows: _Rows, sort: bool) -> tuple[np.ndarray, int] | None:
    """Codes through a hash of each row's 8-byte words; None on a hash collision (then Arrow codes it).

    Exact, not probabilistic: up to 8 bytes the hash is a bijection of the bytes; above that rows are
    checked against a row of their code, and a collision (about 1 in 10^9 for 100k ids) returns None.
    """
    import pyarrow as pa

    n, width, data, start = rows.n, rows.width, rows.data, rows.start
    if width < 8:
        # Too short to read a word in place: copy into zero-padded words (little-endian, so low bytes).
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :width] = data[start : start + n * width].reshape(n, width)
        words = [padded.view("<u8").ravel()]
    else:
        # Words at 0, 8, ... and one ending at the last byte (it may overlap the one before): no copies.
        words = [rows.at(at, "<u8") for at in [*range(0, width - 8, 8), width - 8]]
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
