"""scribbles.testing: the conformance kit passes every built-in and names each way a technique can break."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from scribbles.core import (
    Dataset,
    DataSource,
    Fold,
    Loss,
    Metric,
    Model,
    Splitter,
    Strategy,
    Tracker,
    TrainResult,
    TTATransform,
    View,
    hookimpl,
    load_registry,
)
from scribbles.testing import TechniqueCheckError, check_technique, synthetic_dataset, technique_problems
from torch import nn

REGISTRY = load_registry(autoload=False)
#: Every built-in, the mlflow tracker included (its dry run writes a real MLflow database and model).
BUILTINS = REGISTRY.techniques()


@pytest.mark.parametrize("info", BUILTINS, ids=[f"{i.family}-{i.name}" for i in BUILTINS])
def test_every_builtin_conforms(info) -> None:
    """Each built-in passes its family's contract with its defaults (or example_params)."""
    assert technique_problems(info.cls, registry=REGISTRY) == []


def problems(cls: type, **params) -> list[str]:
    return technique_problems(cls, params=params or None, registry=REGISTRY)


# ---------------------------------------------------------------- splitters


class _SplitterBase(Splitter):
    """A splitter under test."""

    name = "under_test"

    class Params(BaseModel):
        n_splits: int = 2


def splitter(name: str, split, guards: frozenset[str] = frozenset()) -> type[Splitter]:
    return type(name, (_SplitterBase,), {"split": split, "guards": guards, "__doc__": f"{name}."})


def test_splitter_with_a_row_on_both_sides_is_stopped_by_the_guard() -> None:
    def split(self, dataset: Dataset) -> Iterator[Fold]:
        yield Fold(0, np.arange(0, 30), np.arange(24, 48))

    found = problems(splitter("Overlap", split))
    assert any("leakage guard" in p and "6 rows on both sides" in p for p in found), found


def test_grouped_splitter_that_leaks_groups_is_stopped() -> None:
    def split(self, dataset: Dataset) -> Iterator[Fold]:
        rows = np.arange(len(dataset))
        yield Fold(0, rows[rows % 2 == 0], rows[rows % 2 == 1])

    found = problems(splitter("LeakyGroups", split, frozenset({"group"})))
    assert any("8 groups of 'g' on both sides" in p for p in found), found


def test_a_gap_the_splitter_class_declares_is_enforced_by_the_guard() -> None:
    def split(self, dataset: Dataset) -> Iterator[Fold]:
        yield Fold(0, np.arange(0, 20), np.arange(21, 30))  # a gap of 1 row, the class declares 5

    cls = splitter("Blocked", split, frozenset({"time"}))
    cls.gap = 5
    found = problems(cls)
    assert any("leakage guard" in p and "gap" in p for p in found), found


def test_time_splitter_that_validates_on_the_past_is_stopped() -> None:
    def split(self, dataset: Dataset) -> Iterator[Fold]:
        yield Fold(0, np.arange(24, 48), np.arange(0, 24))

    found = problems(splitter("Backwards", split, frozenset({"time"})))
    assert any("train ends at" in p for p in found), found


def test_splitter_that_leaves_rows_out_passes_but_one_that_changes_its_mind_is_named() -> None:
    def partial(self, dataset: Dataset) -> Iterator[Fold]:  # a gap or a training window leaves rows out
        yield Fold(0, np.arange(0, 20), np.arange(20, 40))

    assert problems(splitter("Partial", partial)) == []

    def empty(self, dataset: Dataset) -> Iterator[Fold]:
        yield Fold(0, np.arange(0, 20), np.arange(0))

    assert any("no fold has a valid row" in p for p in problems(splitter("Empty", empty)))

    def shuffled(self, dataset: Dataset) -> Iterator[Fold]:
        order = np.random.permutation(len(dataset))
        yield Fold(0, order[:24], order[24:])

    assert any("different folds on a second call" in p for p in problems(splitter("Unseeded", shuffled)))


# ---------------------------------------------------------------- models, losses, strategies


class TwoScores(Model):
    """A model that forgets the number of classes."""

    name = "two_scores"
    kinds = frozenset({"tabular"})

    def build(self, spec):
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


class Frozen(Model):
    """A model whose output does not depend on any parameter."""

    name = "frozen"
    kinds = frozenset({"tabular", "image"})

    def build(self, spec):
        class Constant(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.unused = nn.Linear(1, 1)

            def forward(self, x):
                return torch.zeros(len(x), spec.n_classes)

        return Constant()


def test_model_output_shape_and_gradients_are_checked() -> None:
    assert any("output is (48, 2); it must be (rows, n_classes) = (48, 3)" in p for p in problems(TwoScores))
    found = problems(Frozen)
    assert any("image: no parameter gets a gradient" in p for p in found), found


class VectorLoss(Loss):
    """A loss that forgets to reduce."""

    name = "vector_loss"

    def build(self, spec):
        class PerRow(nn.Module):
            def forward(self, outputs, batch):
                return nn.functional.cross_entropy(outputs, batch[1], reduction="none")

        return PerRow()


def test_loss_must_be_a_scalar() -> None:
    assert any("must return a scalar tensor" in p for p in problems(VectorLoss))


class DeclaresEmbedding(Model):
    """A model that declares an embedding output but returns bare logits."""

    name = "declares_embedding"
    kinds = frozenset({"tabular"})
    outputs = frozenset({"logits", "embedding"})

    def build(self, spec):
        return nn.Sequential(nn.Flatten(), nn.Linear(4, spec.n_classes))


class DictOutputs(DeclaresEmbedding):
    """The same model returning the dict of outputs it declares."""

    def build(self, spec):
        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body, self.head = nn.Linear(4, 5), nn.Linear(5, spec.n_classes)

            def forward(self, x):
                embedding = self.body(x)
                return {"logits": self.head(embedding), "embedding": embedding}

        return Net()


class BareEstimator(Model):
    """A classic model that returns a bare scikit-learn estimator."""

    name = "bare_estimator"
    kinds = frozenset({"tabular"})

    def build(self, spec):
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=3)


def test_model_outputs_may_be_a_dict_holding_what_the_model_declares() -> None:
    assert problems(DictOutputs) == []
    assert any("outputs declares embedding, but forward returns a plain tensor" in p
               for p in problems(DeclaresEmbedding))


def test_a_classic_model_is_fitted_through_the_strategy_it_names() -> None:
    found = problems(BareEstimator)
    assert any("must name the strategy that fits it in default_strategy" in p for p in found), found
    fitted = type("FittedEstimator", (BareEstimator,), {"default_strategy": "sklearn", "__doc__": "Fitted."})
    assert problems(fitted) == []


class RawCrossEntropy(Loss):
    """A loss that hands the model's outputs straight to cross_entropy."""

    name = "raw_cross_entropy"

    def build(self, spec):
        class Raw(nn.Module):
            def forward(self, outputs, batch):
                return nn.functional.cross_entropy(outputs, batch[1])

        return Raw()


class IgnoresEmbedding(Loss):
    """A loss that says it needs the embedding and never reads it."""

    name = "ignores_embedding"
    needs = frozenset({"logits", "embedding"})

    def build(self, spec):
        class Lazy(nn.Module):
            def forward(self, outputs, batch):
                return nn.functional.cross_entropy(outputs["logits"], batch[1])

        return Lazy()


def test_losses_read_dict_outputs_and_use_what_they_need() -> None:
    assert any("when the model returns a dict of outputs" in p for p in problems(RawCrossEntropy))
    assert any("no finite gradient to the model output 'embedding'" in p for p in problems(IgnoresEmbedding))


class Forgetful(Strategy):
    """A strategy that trains once and never reports an epoch."""

    name = "forgetful"

    def fit(self, model_builder, loss, train_data, valid_data, train_config, callbacks=()):
        return TrainResult(model=model_builder(), history=[])


def test_strategy_must_report_every_epoch() -> None:
    found = problems(Forgetful)
    assert any("history has 0 entries for 2 epochs" in p for p in found)
    assert any("callbacks saw epochs []; expected [0, 1]" in p for p in found)


# ---------------------------------------------------------------- TTA


class _TTABase(TTATransform):
    """A transform under test."""

    name = "tta_under_test"
    kinds = frozenset({"image"})


def transform(name: str, *views: View) -> type[TTATransform]:
    return type(name, (_TTABase,), {"views": lambda self: list(views), "__doc__": f"{name}."})


class FlipView(View):
    """A horizontal flip for dense outputs: its inverse flips back."""

    def invert(self, outputs):
        return outputs.flip(-1)


def test_tta_shape_in_place_and_inverse_are_checked() -> None:
    crop = View("crop", lambda x: x[..., 1:])
    assert any("must keep shape (48, 1, 4, 4)" in p for p in problems(transform("Crop", crop)))

    def scale_in_place(x):
        return x.mul_(2)

    assert any("changed its input in place" in p for p in problems(transform("InPlace", View("x2", scale_in_place))))

    assert problems(transform("Flip", FlipView("flip", lambda x: x.flip(-1)))) == []
    wrong = FlipView("transpose", lambda x: x.transpose(-1, -2))
    assert any("says it inverts, but invert(apply(x)) is not x" in p for p in problems(transform("Wrong", wrong)))


def _edge_shift(x, step):
    """Move the last axis by ``step`` positions, repeating the edge into the gap."""
    index = (torch.arange(x.shape[-1]) - step).clamp(0, x.shape[-1] - 1)
    return x.index_select(-1, index)


def test_tta_lossy_inverse_is_excused_only_where_a_fill_invented_values() -> None:
    good = View("shift", lambda x: _edge_shift(x, 1), lambda y: _edge_shift(y, -1))
    assert problems(transform("EdgeShift", good)) == []
    same_way = View("shift", lambda x: _edge_shift(x, 1), lambda y: _edge_shift(y, 1))
    assert any("values end up away from where they started" in p
               for p in problems(transform("SameWay", same_way)))


def test_tta_is_tried_at_every_shape_its_check_accepts() -> None:
    turn = View("turn", lambda x: x.rot90(1, (-2, -1)), lambda y: y.rot90(-1, (-2, -1)))
    found = problems(transform("Turn", turn))
    assert any("image 1x4x6 view 'turn': apply() gave" in p for p in found), found
    square = type("SquareTurn", (transform("Turn", turn),),
                  {"check": lambda self, shape: None if shape[-1] == shape[-2] else "needs square images"})
    assert not any("apply() gave" in p for p in problems(square))
    never = type("Never", (_TTABase,), {"views": lambda self: [View("x", lambda x: x)],
                                        "check": lambda self, shape: "never fits", "__doc__": "Never."})
    assert any("check() refuses every row shape the kit tries" in p for p in problems(never))


# ---------------------------------------------------------------- metrics, data, trackers, the class itself


class ErrorRate(Metric):
    """The share of wrong rows, wrongly marked greater-is-better."""

    name = "error_rate"

    def compute(self, y_true, proba):
        return float(np.mean(proba.argmax(1) != y_true))


def test_metric_direction_is_checked() -> None:
    assert any("one of them is wrong" in p for p in problems(ErrorRate))
    fixed = type("ErrorRateFixed", (ErrorRate,), {"greater_is_better": False, "__doc__": "Error rate."})
    assert problems(fixed) == []


class ReconstructionError(Metric):
    """Mean squared reconstruction error, wrongly marked greater-is-better."""

    name = "reconstruction_error"
    needs = "reconstruction"

    def compute(self, y_true, proba):
        return float(np.mean((proba - y_true) ** 2))


def test_a_metric_on_a_model_output_gets_that_output() -> None:
    found = problems(ReconstructionError)
    assert any("a perfect reconstruction scores 0.0" in p and "one of them is wrong" in p for p in found), found
    fixed = type("ReconstructionErrorFixed", (ReconstructionError,), {"greater_is_better": False, "__doc__": "MSE."})
    assert problems(fixed) == []


class NeedsPath(DataSource):
    """A data source with a required field and no example_params."""

    name = "needs_path"

    class Params(BaseModel):
        path: str

    def load(self):
        return "not a dataset"


def test_data_source_needs_example_params_and_must_return_a_dataset() -> None:
    assert any("example_params" in p and "path required" in p for p in problems(NeedsPath))
    assert any("not a scribbles.core.Dataset" in p for p in problems(NeedsPath, path="x.csv"))


class Recorder(Tracker):
    """A tracker that records the hooks it sees."""

    name = "recorder"
    seen: list[str] = []

    @hookimpl
    def scribbles_run_start(self, ctx):
        Recorder.seen.append("run_start")

    @hookimpl
    def scribbles_fold_end(self, ctx):
        Recorder.seen.append("fold_end")

    @hookimpl
    def scribbles_run_error(self, ctx):
        Recorder.seen.append(f"run_error:{ctx.status}")


class Misspelt(Tracker):
    """A tracker with a misspelt hook."""

    name = "misspelt"

    @hookimpl
    def scribbles_fold_strat(self, ctx):
        pass


def test_tracker_hooks_are_matched_and_a_whole_lifecycle_runs() -> None:
    Recorder.seen = []
    assert problems(Recorder) == []
    assert Recorder.seen == ["run_start", "fold_end", "run_start", "run_error:FAILED"]
    found = problems(Misspelt)
    assert any("hook scribbles_fold_strat matches no hook spec; did you mean scribbles_fold_start?" in p
               for p in found), found


def test_check_technique_raises_with_every_problem_and_checks_the_class_first() -> None:
    with pytest.raises(TechniqueCheckError) as err:
        check_technique(Forgetful)
    assert len(err.value.problems) == 2 and "strategy 'forgetful' fails the scribbles contract" in str(err.value)
    undocumented = type("Undocumented", (Forgetful,), {"__doc__": None})
    with pytest.raises(TechniqueCheckError, match="has no docstring"):
        check_technique(undocumented)
    with pytest.raises(TechniqueCheckError, match="Params rejected"):
        check_technique(splitter("Any", lambda self, dataset: iter(())), params={"n_splits": "many"})


def test_synthetic_data_has_every_role_and_kind() -> None:
    for kind, shape in (("tabular", (4,)), ("sequence", (8, 2)), ("image", (1, 4, 4))):
        dataset = synthetic_dataset(kind)
        assert dataset.inputs().shape == (48, *shape)
        assert set(dataset.labels()) == {0, 1, 2}
        assert dataset.frame["g"].nunique() == 8 and dataset.frame["t"].is_monotonic_increasing
