"""Time splitters: validate on later, contiguous intervals; train only on what came before.

``time_series`` splits on the time column's own timestamps (rows sharing a timestamp stay together;
rows need not be sorted) or, without one, by row order, where it gives exactly scikit-learn's
``TimeSeriesSplit`` folds. ``purged_group_time_series`` does the same on whole groups and purges
groups that overlap a valid block. Integer amounts count time steps (distinct timestamps; rows
without a time column); strings like "7D" or "12h" are durations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scribbles.core import BadInput, Dataset, Fold, Splitter
from scribbles.core.data import group_codes, read_times

from .common import Params, Span, as_span


@dataclass
class _Steps:
    """Distinct time steps of the data: sorted times, each row's step, and how to word them."""

    times: np.ndarray  # sorted distinct times, int64 (ns for datetimes) or row positions
    row_step: np.ndarray | None  # each row's step; None when rows are the steps (row order)
    is_datetime: bool
    unit: str  # "rows" or "time steps"

    @classmethod
    def of(cls, dataset: Dataset) -> _Steps:
        if not dataset.time:
            # Rows are the steps; rows() hands out slices (views) of this one array.
            return cls(np.arange(len(dataset)), None, False, "rows")
        times = read_times(dataset)
        return cls(times.unique, times.steps, times.is_datetime, "time steps")

    def __len__(self) -> int:
        return len(self.times)

    def ns(self, amount: pd.Timedelta, field: str) -> int:
        if not self.is_datetime:
            what = "data.time holds numbers" if self.row_step is not None else "there is no data.time"
            raise BadInput(f"{field}: a duration ({amount}) needs a datetime time column; {what}, so give a count")
        return int(amount.value)

    def label(self, step: int) -> str:
        value = int(self.times[step])
        return str(pd.Timestamp(value)) if self.is_datetime else f"{self.unit[:-1]} {value}"

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Row positions of the steps in [start, stop)."""
        if self.row_step is None:
            return self.times[start:stop]
        return np.flatnonzero((self.row_step >= start) & (self.row_step < stop))


class TimeSeries(Splitter):
    """Later blocks validate on earlier ones (expanding or sliding window); by the time column if any."""

    name = "time_series"
    guards = frozenset({"time"})

    class Params(Params):
        gap: Span = Field(0, description="steps or a duration between train and valid, like '1D'")
        test_size: Span | None = Field(None, description="steps or a duration per valid block")
        max_train_size: Span | None = Field(None, description="at most this many steps or this long a train window")
        window: Literal["expanding", "sliding"] = Field(
            "expanding", description="sliding keeps every train window as long as the first (or max_train_size)"
        )

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        steps = _Steps.of(dataset)
        blocks = self._valid_blocks(steps)
        gap = as_span(self.params.gap, "split.gap")
        limit = as_span(self.params.max_train_size, "split.max_train_size") if self.params.max_train_size else None
        first_end: int | None = None
        for index, (start, stop) in enumerate(blocks):
            if isinstance(gap, pd.Timedelta):
                cut = int(steps.times[start]) - steps.ns(gap, "split.gap")
                end = int(np.searchsorted(steps.times, cut, "left"))  # steps with time + gap < valid start
            else:
                end = start - gap
            if end <= 0:
                raise BadInput(
                    f"split.gap: fold {index} of {self.name} has no training data: valid starts at "
                    f"{steps.label(start)} and gap={self.params.gap!r} leaves nothing before it; "
                    f"lower gap, test_size or n_splits"
                )
            if first_end is None:
                first_end = end
            if self.params.window == "sliding" and limit is None:
                limit = first_end
            begin = 0
            if isinstance(limit, pd.Timedelta):
                last = int(steps.times[end - 1])
                begin = int(np.searchsorted(steps.times, last - steps.ns(limit, "split.max_train_size"), "right"))
            elif limit and limit < end:
                begin = end - limit
            # Slices of one arange or np.flatnonzero's output: in order, so the order check is skipped.
            yield Fold.of_sorted(index, steps.rows(begin, end), steps.rows(start, stop))

    def _valid_blocks(self, steps: _Steps) -> list[tuple[int, int]]:
        """The [start, stop) steps of each valid block, the last block ending with the data."""
        n, k = len(steps), self.params.n_splits
        size = as_span(self.params.test_size, "split.test_size") if self.params.test_size is not None else None
        if size == 0:
            raise BadInput("split.test_size: 0 leaves the valid blocks empty; give at least 1 or a duration")
        if isinstance(size, pd.Timedelta):
            length = steps.ns(size, "split.test_size")
            edges = int(steps.times[-1]) - length * np.arange(k, -1, -1)
            cuts = np.searchsorted(steps.times, edges, "right")
            blocks = list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))
            for index, (start, stop) in enumerate(blocks):
                if stop <= start:
                    raise BadInput(
                        f"split.test_size: valid block {index} of {self.name} ({size} ending "
                        f"{pd.Timestamp(int(edges[index + 1]))}) holds no rows; use a longer test_size"
                    )
            return blocks
        gap = as_span(self.params.gap, "split.gap")
        # scikit-learn's TimeSeriesSplit arithmetic, on steps.
        size = size or n // (k + 1)
        if k + 1 > n:
            raise BadInput(
                f"split.n_splits: {self.name} needs n_splits + 1 = {k + 1} blocks but the data has {n} {steps.unit}"
            )
        row_gap = gap if isinstance(gap, int) else 0
        if n - row_gap - size * k <= 0:
            raise BadInput(
                f"split.gap/test_size: {self.name} with n_splits={k}, test_size={size} and gap="
                f"{self.params.gap!r} leaves no training data out of {n} {steps.unit}; "
                f"lower gap, test_size or n_splits"
            )
        return [(start, start + size) for start in range(n - k * size, n, size)]


class PurgedGroupTimeSeries(Splitter):
    """Time-ordered group folds: train groups end before valid starts (purged gap), embargo after."""

    name = "purged_group_time_series"
    guards = frozenset({"group", "time"})

    class Params(Params):
        gap: Span = Field(0, description="steps or a duration between the last train row and the valid block")
        embargo: Span = Field(0, description="steps or a duration after each valid block kept out of training")
        test_size: int | None = Field(None, ge=1, description="groups per valid block (default: groups // (n+1))")
        max_train_groups: int | None = Field(None, ge=1, description="train on at most the latest this many groups")

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        k = self.params.n_splits
        codes, n_groups = group_codes(dataset, self.name)
        steps = _Steps.of(dataset)
        row_step = steps.row_step if steps.row_step is not None else np.arange(len(dataset))
        first = np.full(n_groups, np.iinfo(np.int64).max)
        last = np.full(n_groups, -1)
        np.minimum.at(first, codes, row_step)
        np.maximum.at(last, codes, row_step)
        order = np.lexsort((last, first))  # by first step, then last step, then group code
        if n_groups < k + 1:
            raise BadInput(
                f"split.n_splits: {self.name} needs n_splits + 1 = {k + 1} blocks of groups but the data has "
                f"{n_groups} groups; lower n_splits"
            )
        size = self.params.test_size or n_groups // (k + 1)
        if n_groups - size * k <= 0:
            raise BadInput(
                f"split.test_size: {k} valid blocks of {size} groups leave no training groups out of {n_groups}"
            )
        gap = as_span(self.params.gap, "split.gap")
        embargo = as_span(self.params.embargo, "split.embargo")
        starts = steps.times[first]
        ends = steps.times[last]
        embargoed = np.zeros(n_groups, dtype=bool)
        for index, block_start in enumerate(range(n_groups - k * size, n_groups, size)):
            block = order[block_start : block_start + size]
            valid_first, valid_last = int(first[block].min()), int(last[block].max())
            if isinstance(gap, pd.Timedelta):
                before = ends + steps.ns(gap, "split.gap") < steps.times[valid_first]
            else:
                before = last + gap < valid_first
            is_train = before & ~embargoed
            if self.params.max_train_groups:
                ranked = order[np.isin(order, np.flatnonzero(is_train), assume_unique=True)]
                is_train[ranked[: max(0, len(ranked) - self.params.max_train_groups)]] = False
            if not is_train.any():
                raise BadInput(
                    f"split.gap: fold {index} of {self.name} has no training groups: every group ends less than "
                    f"gap={self.params.gap!r} before the valid block starts at {steps.label(valid_first)}; "
                    f"lower gap or n_splits, or use smaller groups"
                )
            is_valid = np.zeros(n_groups, dtype=bool)
            is_valid[block] = True
            yield Fold(index, np.flatnonzero(is_train[codes]), np.flatnonzero(is_valid[codes]))
            # Groups starting within the embargo after this block never train a later fold.
            if isinstance(embargo, pd.Timedelta):
                end_time = int(steps.times[valid_last])
                embargoed |= (starts > end_time) & (starts <= end_time + steps.ns(embargo, "split.embargo"))
            elif embargo:
                embargoed |= (first > valid_last) & (first <= valid_last + embargo)
