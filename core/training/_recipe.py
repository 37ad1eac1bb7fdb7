"""How a built module is made again elsewhere: its technique's family, name and params plus the spec.

A module that crosses a process or machine boundary travels as this recipe (JSON) and its state dict
(tensors, read back with ``weights_only=True``), never as a pickle: the receiving side builds the module
from its own installed techniques, so no code comes over the wire. ``Model.build`` and ``Loss.build``
stamp their result with the recipe (``contracts._stamping``), whoever calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..contracts import RECIPE_ATTRIBUTE as ATTRIBUTE
from ..contracts import ModelSpec
from ..errors import BadInput

if TYPE_CHECKING:
    import torch

    from ..registry import Registry


def recipe_of(module: Any, what: str) -> dict[str, Any]:
    """The recipe stamped on ``module``; a BadInput naming ``what`` when it has none."""
    recipe = getattr(module, ATTRIBUTE, None)
    if not isinstance(recipe, dict):
        raise BadInput(f"{what} {type(module).__name__} was not built by a {what} technique's build(spec); "
                       f"distributed strategies rebuild it on every worker from its technique, so build it "
                       f"with scribbles.core.create('{what}', NAME, ...).build(spec)")
    return recipe


def rebuild(recipe: dict[str, Any], registry: Registry) -> torch.nn.Module:
    """The module ``recipe`` describes, built from this machine's own installed techniques."""
    if not isinstance(recipe, dict) or recipe.get("family") not in ("model", "loss"):
        raise BadInput(f"a job names a technique of family {recipe.get('family') if isinstance(recipe, dict) else '?'}"
                       f"; only models and losses are rebuilt on workers")
    spec = recipe["spec"]
    model_spec = ModelSpec(str(spec["kind"]), tuple(int(n) for n in spec["input_shape"]), int(spec["n_classes"]),
                           tuple(str(c) for c in spec.get("classes", ())),
                           tuple(int(c) for c in spec.get("class_counts", ())),
                           str(spec.get("task", "classification")))  # every field: a regressor stays one
    technique = registry.create(recipe["family"], str(recipe["name"]), **dict(recipe["params"]))
    return technique.build(model_spec)  # type: ignore[attr-defined]
