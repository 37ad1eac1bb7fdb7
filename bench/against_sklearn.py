"""scribbles' fold scores next to a scikit-learn pipeline with the same preprocessing and model on the same folds.

For a shipped config of each kind (tabular classification, regression over time, sequences), with the
k-NN model (the one model both sides build the same way: scikit-learn's own estimator, k = round(ln N)):
scribbles' train-fold task (``run_job``, the flow's own code, without Prefect) against
``Pipeline([preprocessing, KNeighbors*])`` fitted on the same train rows, and the baseline (scikit-learn's
dummy estimator). Run from a project with the demo data built (``scribbles data build``)::

    python bench/against_sklearn.py
"""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pandas as pd
from scribbles.core import load_config
from scribbles.flows import fold_task
from scribbles.flows.fold_task import FoldJob, run_job
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import accuracy_score, mean_squared_error
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CASES = (
    ("configs/activity-mlp.yaml", "tabular classification", "accuracy"),
    ("configs/energy-forecast.yaml", "regression over time", "rmse"),
    ("configs/activity.yaml", "sequences", "accuracy"),
)


def reference(dataset, train, valid, regression: bool, metric: str) -> tuple[float, float]:
    """scikit-learn's pipeline and dummy estimator on the same rows: (model score, baseline score)."""
    frame = dataset.frame[dataset.features]
    text = [c for c in dataset.features if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in dataset.features if c not in text]
    steps = ColumnTransformer([("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), text),
                               ("standard", StandardScaler(), numeric)]) if text else StandardScaler()
    k = max(1, round(math.log(len(train))))
    y = dataset.frame[dataset.target].to_numpy()
    if regression:
        model, dummy = KNeighborsRegressor(k), DummyRegressor()
    else:
        model, dummy = KNeighborsClassifier(k), DummyClassifier(strategy="prior")
    pipeline = make_pipeline(steps, model).fit(frame.iloc[train], y[train])
    predicted = pipeline.predict(frame.iloc[valid])
    base = dummy.fit(np.zeros((len(train), 1)), y[train]).predict(np.zeros((len(valid), 1)))
    if metric == "rmse":
        return (float(np.sqrt(mean_squared_error(y[valid], predicted))),
                float(np.sqrt(mean_squared_error(y[valid], base))))
    return float(accuracy_score(y[valid], predicted)), float(accuracy_score(y[valid], base))


def main() -> None:
    for path, kind, metric in CASES:
        config = load_config(path, ["model={name: knn}", "train.strategy=null", "tracking=[]", "evaluate.tta=null",
                                    f"evaluate.metrics=[{metric}]"]).model_dump(mode="json")
        ready = fold_task.prepare(config, False)
        regression = ready.plan.config.task == "regression"
        print(f"\n{path} ({kind}), model knn, metric {metric}")
        print(f"{'fold':>4}  {'scribbles':>10}  {'scikit-learn':>12}  {'baseline':>9}")
        with tempfile.TemporaryDirectory() as out:
            for fold in ready.folds:
                job = FoldJob(config, False, fold.index, ready.dataset.version, ".", out)
                ours = run_job(job).metrics[metric]
                theirs, base = reference(ready.dataset, fold.train, fold.valid, regression, metric)
                print(f"{fold.index:>4}  {ours:>10.4f}  {theirs:>12.4f}  {base:>9.4f}")
        fold_task.forget()


if __name__ == "__main__":
    main()
