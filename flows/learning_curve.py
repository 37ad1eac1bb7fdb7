"""Bias-variance diagnosis from learning curves: train and valid error over growing training fractions.

The notes' reading of the curves: a large gap between train and valid error means **high variance**
(more data or fewer features help); a high train error close to the valid error means **high bias**
(a bigger model or more features help). Each fraction trains on a seeded subset of every fold's train
rows (the subsets are nested: a larger fraction keeps the smaller one's rows) and scores both sides.
The run is recorded through the lifecycle hooks, like an experiment, with the plot as an artifact.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scribbles.core import (
    BadInput,
    Dataset,
    Plan,
)
from scribbles.core.data import fold_inputs
from scribbles.core.evaluation import evaluate
from scribbles.core.redact import masking_errors
from scribbles.core.training import model_builder

from . import fold_task
from .config_ref import unstash
from .lifecycle import run_lifecycle
from .prefect_env import configure_prefect
from .runs import load_data, make_folds, run_context

configure_prefect()

from prefect import flow  # noqa: E402  (configure_prefect must run first)

DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.4, 0.7, 1.0)
HIGH_VARIANCE, HIGH_BIAS = "high variance", "high bias"
ADVICE = {
    HIGH_VARIANCE: "more training data or fewer features should help; a bigger model will not",
    HIGH_BIAS: "a bigger model (or more features) should help; more data alone will not",
}


@dataclass
class CurvePoint:
    """One training fraction: mean train rows and mean train/valid error (1 - accuracy) over folds."""

    fraction: float
    rows: float
    train_error: float
    valid_error: float


@dataclass
class Diagnosis:
    """The curve, its verdict and the advice the notes give for it."""

    points: list[CurvePoint]
    verdict: str
    advice: str

    @property
    def end(self) -> CurvePoint:
        """The point with the most training data."""
        return self.points[-1]


def nested_subset(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded share of ``rows`` (at least one); the same seed gives nested subsets as fraction grows."""
    order = np.random.RandomState(seed).permutation(len(rows))
    keep = max(1, round(fraction * len(rows)))
    return np.sort(rows[order[:keep]])


def verdict(points: list[CurvePoint]) -> str:
    """High variance when the end point's train-valid gap exceeds its train error, else high bias."""
    end = points[-1]
    return HIGH_VARIANCE if end.valid_error - end.train_error > end.train_error else HIGH_BIAS


def errors(plan: Plan, dataset: Dataset, train_rows: np.ndarray, valid_rows: np.ndarray) -> tuple[float, float]:
    """Train on ``train_rows`` as the experiment does; the error on those rows and on ``valid_rows``."""
    # Preprocessing fitted on the training rows only, as train_fold does.
    task = plan.config.task
    inputs = fold_inputs(plan.preprocess, dataset, train_rows, valid_rows, task)
    train, valid, spec = inputs.train, inputs.valid, inputs.spec
    config = plan.config.train
    result = plan.strategy.fit(
        model_builder(plan.model, spec, train[0], config),
        plan.loss.build(spec),
        torch.utils.data.TensorDataset(*train),
        torch.utils.data.TensorDataset(*valid),
        config,
        [],
    )
    scores = []
    for x, y in (train, valid):
        if task == "regression":  # the error is the RMSE, in the target's units
            predicted, _ = evaluate(result.model, x, chunk=config.batch_size * 4, class_dim=None)
            scores.append(float(np.sqrt(np.mean((predicted[:, 0] - y.numpy()) ** 2))))
            continue
        proba, _ = evaluate(result.model, x, chunk=config.batch_size * 4)
        scores.append(float(np.mean(proba.argmax(1) != y.numpy())))
    return scores[0], scores[1]


def baseline_error(plan: Plan, dataset: Dataset, folds: list[Any]) -> float:
    """The valid error of a model that ignores the features (scikit-learn's dummy estimators on each fold's
    train targets), averaged over ``folds``: the line a learning curve has to get below."""
    from scribbles.core.data import targets
    from scribbles.core.evaluation import baseline_predictions

    task, errors_ = plan.config.task, []
    for fold in folds:
        y_train, y_valid = targets(dataset, fold.train, task), targets(dataset, fold.valid, task)
        predicted = baseline_predictions(task, y_train, len(y_valid), len(dataset.classes))
        if task == "regression":
            errors_.append(float(np.sqrt(np.mean((predicted[:, 0] - y_valid) ** 2))))
        else:
            errors_.append(float(np.mean(predicted.argmax(1) != y_valid)))
    return float(np.mean(errors_))


def learning_curve(plan: Plan, dataset: Dataset, folds: list[Any], fractions: list[float]) -> Diagnosis:
    """Train and valid error at every fraction, averaged over ``folds``, and the verdict."""
    points = []
    for fraction in fractions:
        results = []
        for fold in folds:
            rows = nested_subset(fold.train, fraction, plan.config.train.seed + fold.index)
            results.append((len(rows), *errors(plan, dataset, rows, fold.valid)))
        n, train_error, valid_error = np.mean(np.array(results), axis=0)
        points.append(CurvePoint(fraction, float(n), float(train_error), float(valid_error)))
    found = verdict(points)
    return Diagnosis(points, found, ADVICE[found])


def plot(diagnosis: Diagnosis, title: str, path: Path) -> Path:
    """The learning curves as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [p.rows for p in diagnosis.points]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rows, [p.train_error for p in diagnosis.points], "o-", label="train error")
    ax.plot(rows, [p.valid_error for p in diagnosis.points], "s-", label="valid error")
    ax.set_xlabel("training rows")
    ax.set_ylabel("error (1 - accuracy)")
    ax.set_title(f"{title}: {diagnosis.verdict}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def check_fractions(fractions: list[float]) -> list[float]:
    """Sorted fractions in (0, 1]; a BadInput otherwise."""
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise BadInput(f"--fractions: {fractions} must be numbers in (0, 1], e.g. 0.1,0.2,0.5,1")
    return sorted(set(fractions))


@flow(name="scribbles-diagnose", validate_parameters=False)
@masking_errors  # Prefect keeps a failed run's message in its database
def diagnose(config: dict[str, Any], fractions: list[float] | None = None, max_folds: int | None = None
             ) -> dict[str, Any]:
    """Learning curves on the configured split, the verdict, and a run with the plot for the trackers."""
    config = unstash(config)  # Prefect records a masked config and a reference (see config_ref)
    fractions = check_fractions(list(fractions or DEFAULT_FRACTIONS))
    plan, registry = fold_task.plan_for(config, False)
    load_data(config, False)
    make_folds(config, False)
    dataset = fold_task.dataset_for(plan)
    folds = fold_task.folds_for(plan)[: max_folds or None]
    with tempfile.TemporaryDirectory(prefix="scribbles-diagnose-") as tmp:
        run = run_context(plan, dataset, len(folds), Path(tmp))
        run.run_name = "diagnose"
        diagnosis = learning_curve(plan, dataset, folds, fractions)
        run.tags["diagnosis"] = diagnosis.verdict
        run.artifacts["learning_curve"] = plot(diagnosis, plan.experiment, Path(tmp) / "learning_curve.png")
        curve = Path(tmp) / "learning_curve.json"
        curve.write_text(json.dumps({"verdict": diagnosis.verdict, "advice": diagnosis.advice,
                                     "points": [asdict(p) for p in diagnosis.points]}, indent=2))
        run.artifacts["learning_curve_json"] = curve
        summary = {"train_error": diagnosis.end.train_error, "valid_error": diagnosis.end.valid_error}
        for point in diagnosis.points:
            tag = f"p{round(point.fraction * 100):03d}"
            summary[f"train_error_{tag}"] = point.train_error
            summary[f"valid_error_{tag}"] = point.valid_error
        with run_lifecycle(registry, run, plan.trackers) as ending:
            ending.end(summary)
    return {"experiment": plan.experiment, "verdict": diagnosis.verdict, "advice": diagnosis.advice,
            "points": [asdict(p) for p in diagnosis.points], "links": dict(run.links),
            "baseline_error": baseline_error(plan, dataset, folds), "task": plan.config.task}
