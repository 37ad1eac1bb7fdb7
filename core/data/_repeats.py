"""Repeated cross-validation: ``split: {..., repeats: R}`` runs a shuffling splitter R times.

Repeat ``r`` uses the splitter's own ``seed`` plus ``r``, so every repeat is a different shuffle and the
whole is reproducible (scikit-learn's ``RepeatedKFold`` draws its seeds from one generator instead; the
folds differ from its, the design does not). Fold ``i`` of repeat ``r`` has index ``r * k + i``; the
paired statistics then use all ``R * k`` differences with the corrected variance of Bouckaert and Frank
(2004), see ``scribbles.core.evaluation.corrected_ttest``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..contracts import Dataset, Fold, Splitter
from ..errors import ConfigError


def shuffles(splitter: Splitter) -> bool:
    """True for a splitter whose folds change with its ``seed`` (a ``shuffle`` field, when it has one, on)."""
    fields = type(splitter.params).model_fields
    return "seed" in fields and bool(getattr(splitter.params, "shuffle", True))


class Repeated(Splitter):
    """A shuffling splitter run ``repeats`` times with seeds seed, seed + 1, ...; folds numbered across."""

    def __init__(self, inner: Splitter, repeats: int) -> None:
        super().__init__(inner.params)
        self.inner = inner
        self.repeats = repeats

    # The wrapper answers as the splitter it repeats: the leakage guard, reports and tags see that one.
    @property  # type: ignore[override]
    def name(self) -> str:
        return self.inner.name

    @property  # type: ignore[override]
    def guards(self) -> frozenset[str]:
        return self.inner.guards

    def time_gap(self) -> int | str:
        return self.inner.time_gap()

    def per_repeat(self, dataset: Dataset | None = None) -> int:
        """Folds in one repeat."""
        return self.inner.get_n_splits(dataset)

    def get_n_splits(self, dataset: Dataset | None = None) -> int:
        return self.repeats * self.per_repeat(dataset)

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        index = 0
        for repeat in range(self.repeats):
            params = self.inner.params.model_copy(update={"seed": self.inner.params.seed + repeat})
            for fold in type(self.inner)(params).split(dataset):
                yield Fold.of_sorted(index, fold.train, fold.valid)
                index += 1


def with_repeats(splitter: Splitter, repeats: Any) -> Splitter:
    """``splitter`` repeated ``repeats`` times; a ConfigError (field ``split.repeats``) when it cannot be."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"must be a whole number of at least 1 (got {repeats!r})", "split.repeats")
    if repeats == 1:
        return splitter
    if not shuffles(splitter):
        hint = ("set split.shuffle: true" if "shuffle" in type(splitter.params).model_fields
                else "use a shuffling splitter (kfold or stratified_kfold with shuffle: true, shuffle, "
                     "group_shuffle, group_kfold or stratified_group_kfold with shuffle: true)")
        raise ConfigError(
            f"splitter '{splitter.name}' gives the same folds every time, so repeating it adds "
            f"nothing; {hint}, or remove split.repeats", "split.repeats")
    return Repeated(splitter, repeats)
