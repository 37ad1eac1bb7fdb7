"""Trials whose parameters an earlier trial of the study already had: asked again, not trained again.

Optuna's samplers draw a point again, most of all TPE on a small categorical space (``configs/search.yaml``
has 8 points). Optuna leaves repeats to the objective (its FAQ, "How can I
ignore duplicated samples?"); here a repeat is told the earlier trial's outcome (its value and intermediate
values, or PRUNED or FAIL) with the user attribute ``scribbles.repeat_of`` naming it, and does not count against
``sweep.optuna.trials``: the budget is trials trained. The outcome matters: TPE picks the point where
good trials are densest against the rest, and with one good trial on a categorical space that is the
same point every time; told FAIL (ignored), the repeats taught it nothing and it drew that point a
hundred times in a row. Told the value, the copies move it on.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .pruning import MLFLOW_RUN

#: The Optuna user attribute of a repeat: the number of the trial whose parameters it drew again.
REPEAT_OF = "scribbles.repeat_of"
#: Draws in a row that may all be repeats before the space counts as used up.
MAX_REPEATS = 100


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def is_repeat(trial: Any) -> bool:
    """True for a trial (``FrozenTrial``) told as a repeat: it holds no result and no budget."""
    return REPEAT_OF in trial.user_attrs


def space_size(distributions: dict[str, Any]) -> int | None:
    """How many points the space holds: the product of the choices when every path is categorical, else
    None (a range: as good as endless)."""
    import optuna

    if all(isinstance(d, optuna.distributions.CategoricalDistribution) for d in distributions.values()):
        return math.prod(len(d.choices) for d in distributions.values())
    return None


def ask_untried(study: Any, distributions: dict[str, Any], n: int) -> tuple[list[Any], int]:
    """Up to ``n`` new trials (``study.ask``) whose parameters no earlier trial and no other of these had,
    and how many repeats were drawn (and told) on the way.

    Fewer than ``n`` when the space holds no untried point, or ``MAX_REPEATS`` draws in a row were repeats.
    """

    seen = {_key(t.params): t for t in study.get_trials(deepcopy=False) if not is_repeat(t)}
    size = space_size(distributions) or math.inf
    batch: list[Any] = []
    repeats = in_a_row = 0
    while len(batch) < n and len(seen) < size and in_a_row < MAX_REPEATS:
        trial = study.ask(distributions)
        key = _key(trial.params)
        if key not in seen:
            seen[key] = trial
            batch.append(trial)
            in_a_row = 0
            continue
        _tell_as(study, trial, seen[key])
        repeats += 1
        in_a_row += 1
    return batch, repeats


def _tell_as(study: Any, trial: Any, earlier: Any) -> None:
    """Tell ``trial`` what ``earlier`` (a finished ``FrozenTrial``, or a trial of this batch) ended as."""
    import optuna

    State = optuna.trial.TrialState
    trial.set_user_attr(REPEAT_OF, earlier.number)
    run_id = getattr(earlier, "user_attrs", {}).get(MLFLOW_RUN)
    if run_id:  # a repeat that is the study's best trial still leads to the run that trained it
        trial.set_user_attr(MLFLOW_RUN, run_id)
    state = getattr(earlier, "state", State.RUNNING)  # a ``Trial`` handed out in this batch has no state yet
    if state in (State.COMPLETE, State.PRUNED):
        # Its curve too: a pruner counts the repeat as a finished trial (its startup count), so it must
        # also see the repeat's intermediate values, or it prunes on the median of fewer curves than it counted.
        for step, value in earlier.intermediate_values.items():
            trial.report(value, step)
    if state == State.COMPLETE:
        study.tell(trial, earlier.value)
    elif state == State.PRUNED:
        study.tell(trial, state=State.PRUNED)
    else:  # failed, or not finished yet: nothing to learn from it
        study.tell(trial, state=State.FAIL)
