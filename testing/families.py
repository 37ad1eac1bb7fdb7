"""The family contracts the conformance kit checks: data, splitter, metric, tracker (torch ones elsewhere).

Each check takes a built technique, a temporary working directory and an optional registry, and
returns one line per problem found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pluggy
from scribbles.core import (
    Dataset,
    EpochContext,
    Fold,
    FoldContext,
    FoldEndContext,
    LeakageError,
    Registry,
    RunContext,
    RunEndContext,
    RunErrorContext,
    Technique,
    hookspecs,
)
from scribbles.core.data import check_fold, fold_report
from scribbles.core.markers import PROJECT
from scribbles.core.registry import hook_problems

from .dry_run import DryRunError
from .synthetic import synthetic_dataset
from .torch_families import check_loss, check_model, check_strategy, inputs_of, producer, spec_of
from .tta_family import check_tta


def _call(label: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``func(*args)``, with any exception turned into a DryRunError naming the step."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise DryRunError(f"{label} raised {type(exc).__name__}: {text[0] if text else ''}") from None


def check_data(source: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """load() returns a non-empty Dataset whose roles name numeric columns that exist."""
    dataset = _call("load()", source.load)
    if not isinstance(dataset, Dataset):
        return [f"load() returned {type(dataset).__name__}, not a scribbles.core.Dataset"]
    problems = []
    frame = dataset.frame
    if len(frame) == 0:
        problems.append("load() returned a Dataset with no rows")
    for role in ("target", "group", "time"):
        column = getattr(dataset, role)
        if column is not None and column not in frame.columns:
            problems.append(f"Dataset.{role} is {column!r}, which is not a column of its frame")
    missing = [c for c in dataset.features if c not in frame.columns]
    if missing:
        problems.append(f"Dataset.features names columns its frame lacks: {', '.join(missing[:5])}")
    elif not all(pd.api.types.is_numeric_dtype(frame[c]) for c in dataset.features):
        problems.append("Dataset.features holds non-numeric columns")
    if int(np.prod(dataset.shape)) != len(dataset.features):
        problems.append(f"Dataset.shape {dataset.shape} does not hold its {len(dataset.features)} features")
    if not isinstance(dataset.version, str) or not dataset.version:
        problems.append("Dataset.version is empty; it must identify the data read (a content hash, say)")
    if not problems and type(source).example_params.__func__ is not Technique.example_params.__func__:
        # The source was pointed at the kit's own synthetic data: it must read back exactly those rows.
        expected = synthetic_dataset()
        if len(frame) != len(expected) or not np.array_equal(
            frame[dataset.target].to_numpy(), expected.frame[expected.target].to_numpy()
        ):
            problems.append("load() did not read back the rows example_params() pointed it at")
    return problems


def check_splitter(splitter: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """Folds are Fold objects of valid positions that pass the leakage guard, validate some rows, repeat.

    Rows in no fold are allowed: a gap, an embargo or a training window leaves rows out by design.
    """
    dataset = synthetic_dataset()
    n = len(dataset)
    folds = _call("split()", lambda: list(splitter.split(dataset)))
    if not folds:
        return ["split() yielded no folds"]
    if not all(isinstance(f, Fold) for f in folds):
        return ["split() must yield scribbles.core.Fold objects"]
    problems = []
    if len({f.index for f in folds}) != len(folds):
        problems.append("fold indices repeat; give each fold its own index")
    validated = np.zeros(n, dtype=bool)
    for fold in folds:
        sides = np.concatenate([fold.train, fold.valid])
        if len(sides) and (sides.min() < 0 or sides.max() >= n):
            problems.append(f"fold {fold.index} holds row positions outside 0..{n - 1}")
            continue
        if len(np.unique(fold.train)) != len(fold.train) or len(np.unique(fold.valid)) != len(fold.valid):
            problems.append(f"fold {fold.index} lists a row twice on one side")
        try:
            check_fold(dataset, fold, splitter)
        except LeakageError as exc:
            problems.append(f"leakage guard: {exc}")
        validated[fold.valid] = True
    if not validated.any():
        problems.append("no fold has a valid row; each fold's valid positions are the rows it scores")
    again = _call("split() (second call)", lambda: list(splitter.split(dataset)))
    same = len(again) == len(folds) and all(
        np.array_equal(a.train, b.train) and np.array_equal(a.valid, b.valid) for a, b in zip(again, folds, strict=True)
    )
    if not same:
        problems.append("split() gave different folds on a second call; seed any randomness")
    return problems


def check_metric(metric: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """A finite float, and a perfect prediction scores at least as well as a random one.

    A metric that ``needs`` a model output (not "proba") scores it as the evaluator does: it gets the
    flattened inputs and that output of a model that produces it (see ``check_output_metric``).
    """
    needs = metric.needs
    if needs != "proba":
        return check_output_metric(metric, needs, registry)
    rng = np.random.default_rng(0)
    if "classification" not in metric.tasks:  # a regression metric scores predictions (rows, 1)
        target = rng.normal(10.0, 3.0, 48)
        noisy_score = _call("compute()", metric.compute, target, (target + rng.normal(0, 3.0, 48))[:, None])
        perfect_score = _call("compute()", metric.compute, target, target[:, None])
        return _score_problems(metric, perfect_score, noisy_score, "a perfect prediction", "a noisy one")
    dataset = synthetic_dataset()
    y_true = dataset.labels()
    classes = len(dataset.classes)
    noisy = rng.dirichlet(np.ones(classes), size=len(y_true))
    perfect = np.eye(classes)[y_true]
    noisy_score = _call("compute()", metric.compute, y_true, noisy)
    perfect_score = _call("compute()", metric.compute, y_true, perfect)
    return _score_problems(metric, perfect_score, noisy_score, "a perfect prediction", "a random one")


def check_output_metric(metric: Any, needs: str, registry: Registry | None) -> list[str]:
    """compute(inputs, output) on an untrained model that declares ``needs`` is a finite float.

    As in ``scribbles.core.evaluation.tta_metrics``, ``y_true`` is the flattened inputs and ``proba``
    the model's output ``needs``, flattened per row. For ``reconstruction`` the inputs themselves, a
    perfect reconstruction, must score at least as well as the untrained model's.
    """
    from scribbles.core.evaluation import collect_output

    found = producer(registry, needs)
    if found is None:
        return [f"needs the model output {needs!r}, which no model in the registry produces with its defaults; "
                "the kit cannot dry-run it (pass a registry that holds one)"]
    model, kind = found
    dataset = synthetic_dataset(kind)
    x, _ = inputs_of(dataset)
    module = _call(f"build() of model '{model.name}'", model.build, spec_of(dataset))
    output = _call(f"model '{model.name}' giving {needs!r}", collect_output, module, x, needs)
    y_true = x.reshape(len(x), -1).numpy()
    score = _call("compute()", metric.compute, y_true, output)
    if needs != "reconstruction":
        return _score_problems(metric, score, score, "", "")
    perfect = _call("compute()", metric.compute, y_true, y_true.copy())
    return _score_problems(metric, perfect, score, "a perfect reconstruction", f"untrained '{model.name}'")


def _score_problems(metric: Any, perfect: Any, other: Any, perfect_label: str, other_label: str) -> list[str]:
    """Non-finite scores, or ``perfect`` scoring worse than ``other`` given ``greater_is_better``."""
    for score in (other, perfect):
        if not isinstance(score, float | int | np.floating) or not math.isfinite(float(score)):
            return [f"compute() returned {score!r}; it must return a finite float"]
    better = perfect >= other if metric.greater_is_better else perfect <= other
    if not better:
        return [
            f"{perfect_label} scores {perfect} and {other_label} {other}; "
            f"greater_is_better is {metric.greater_is_better}, so one of them is wrong"
        ]
    return []


def check_tracker(tracker: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """Hooks match the specs, and a whole run (then a failed one) goes through without an error."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(tracker)
    except pluggy.PluginValidationError as exc:
        return [f"hook signature does not fit its spec: {exc}"]
    problems = hook_problems(pm, tracker)
    if problems:
        return problems
    if not pm.get_hookcallers(tracker):
        return ["implements no lifecycle hook (scribbles_run_start, ...); a tracker must implement some"]
    dataset = synthetic_dataset()
    fold = Fold(0, np.arange(0, 36), np.arange(36, 48))
    config = {"experiment": "scribbles-check", "data": {"name": "synthetic"}}
    for failing in (False, True):
        run = RunContext(experiment="scribbles-check", config=config, params={"data.name": "synthetic"},
                         tags={"scribbles.splitter": "check"}, data_version=dataset.version,
                         data_source="synthetic", data_rev=None, n_folds=1)
        _call("scribbles_run_start", pm.hook.scribbles_run_start, ctx=run)
        _call("scribbles_fold_start", pm.hook.scribbles_fold_start,
              ctx=FoldContext(run, fold, fold_report(dataset, fold)))
        _call("scribbles_epoch_end", pm.hook.scribbles_epoch_end,
              ctx=EpochContext(run, 0, 0, {"train_loss": 1.0, "valid_loss": 1.1}))
        if failing:
            _call("scribbles_run_error", pm.hook.scribbles_run_error,
                  ctx=RunErrorContext(run, RuntimeError("dry run failure"), "FAILED"))
        else:
            # What a run hands over at a fold's end: the served model with raw rows, targets and predictions.
            model, example = _served_model(dataset)
            _call("scribbles_fold_end", pm.hook.scribbles_fold_end,
                  ctx=FoldEndContext(run, 0, {"accuracy": 0.5, "accuracy_tta": 0.5}, model=model,
                                     input_example=example, y_true=dataset.labels(fold.valid),
                                     y_pred=dataset.labels(fold.valid), classes=[str(c) for c in dataset.classes],
                                     history=[{"train_loss": 1.0, "valid_loss": 1.1}]))
            _call("scribbles_run_end", pm.hook.scribbles_run_end,
                  ctx=RunEndContext(run, {"accuracy_mean": 0.5, "accuracy_std": 0.0}))
    return []


def check_preprocessor(step: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """Fitted on train rows, the step turns both sides into finite numbers, row for row; a step that says it
    keeps columns keeps one per feature; fitting again on the same rows gives the same outputs."""
    from scribbles.core.data import fit

    dataset = synthetic_dataset()
    frame = dataset.frame.copy()
    features = list(dataset.features)
    if step.dtypes == frozenset({"categorical"}):
        frame["colour"] = np.where(np.arange(len(frame)) % 2, "red", "blue")
        features.append("colour")
    train, valid = frame.iloc[:36], frame.iloc[36:]
    try:
        fitted = fit([step], train, features)
        out_train, out_valid = fitted.transform(train), fitted.transform(valid)
    except Exception as exc:
        return [f"fit/transform on the kit's columns raised {type(exc).__name__}: {str(exc)[:200]}"]
    problems = []
    if len(out_train) != len(train) or len(out_valid) != len(valid):
        problems.append("transform changed the number of rows")
    if not (np.isfinite(out_train).all() and np.isfinite(out_valid).all()):
        problems.append("transform gave NaN or inf on finite inputs")
    if step.keeps_columns and out_train.shape[1] != len(features):
        problems.append(f"keeps_columns is true but {len(features)} columns became {out_train.shape[1]}")
    again = fit([step], train, features).transform(train)
    if not np.allclose(again, out_train) or not np.allclose(fitted.transform(train), out_train):
        problems.append("refitting on the same train rows gave other outputs")
    return problems


def _served_model(dataset: Dataset) -> tuple[Any, np.ndarray]:
    """A small torch model as the flow hands it to trackers (raw flat rows in, class scores out), and rows."""
    import torch
    from scribbles.core.evaluation import Standardised

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(len(dataset.features), len(dataset.classes)))
    raw = np.array(dataset.inputs()[:5])
    return Standardised(module, float(raw.mean()), float(raw.std()) or 1.0, dataset.shape), raw


#: The contract check of each family.
CHECKS: dict[str, Callable[[Technique, Path, Registry | None], list[str]]] = {
    "data": check_data,
    "splitter": check_splitter,
    "preprocess": check_preprocessor,
    "model": check_model,
    "loss": check_loss,
    "strategy": check_strategy,
    "tta": check_tta,
    "metric": check_metric,
    "tracker": check_tracker,
}
