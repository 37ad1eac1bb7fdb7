"""The conformance kit's entry points: ``check_technique`` and ``technique_problems``.

A technique is built from ``params`` (or its ``example_params(workdir, dataset)`` classmethod, or its
defaults) and run through its family's contract on tiny synthetic data, inside a temporary working
directory so that nothing it writes lands in the caller's project.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from scribbles.core import Registry, Technique
from scribbles.core.registry import technique_problem

from .dry_run import DryRunError
from .synthetic import synthetic_dataset

Check = Callable[[Technique, Path, "Registry | None"], list[str]]


class TechniqueCheckError(AssertionError):
    """A technique broke its family's contract; ``problems`` lists every finding, one line each."""

    def __init__(self, cls: type, problems: list[str]) -> None:
        self.problems = problems
        label = f"{getattr(cls, 'family', '?')} '{getattr(cls, 'name', cls)}'"
        super().__init__(f"{label} fails the scribbles contract:\n" + "\n".join(f"- {p}" for p in problems))


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run the block with ``path`` as the working directory (relative paths a technique writes land there)."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


#: The factors the kit composes when a ``compose`` comes without params: a lossy shift and an exact flip.
COMPOSE_PARTS: tuple[dict[str, Any], ...] = ({"name": "shift", "dx": [-1, 1], "dy": [0]}, {"name": "hflip"})


def kit_params(cls: type[Technique]) -> dict[str, Any]:
    """Params the kit supplies to a class that has no ``example_params``: factors for a compose, else none."""
    from scribbles.core.evaluation import Compose

    if issubclass(cls, Compose):
        return {"transforms": [dict(part) for part in COMPOSE_PARTS]}
    return {}


def build(cls: type[Technique], params: dict[str, Any] | None, workdir: Path) -> Technique:
    """``cls`` built from ``params``, else ``cls.example_params(workdir, dataset)``, else ``kit_params``."""
    if params is None:
        example = cls.example_params(workdir, synthetic_dataset())
        params = dict(example) if example is not None else kit_params(cls)
    try:
        validated = cls.Params(**params)
    except ValidationError as exc:
        missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"]
        if missing and not params:
            raise DryRunError(
                f"cannot be built with default params ({', '.join(missing)} required); give the class an "
                f"`example_params(cls, workdir, dataset)` classmethod returning fields for a dry run"
            ) from None
        raise DryRunError(f"Params rejected {params!r}: {exc.errors()[0]['msg']}") from None
    return cls(validated)


def technique_problems(
    cls: Any, params: dict[str, Any] | None = None, registry: Registry | None = None
) -> list[str]:
    """Every way ``cls`` breaks its family's contract, one line each; empty when it conforms.

    ``registry`` supplies companion techniques (a strategy's model and loss); default: the built-ins.
    """
    from .families import CHECKS

    problem = technique_problem(cls)
    if problem:
        return [problem]
    with tempfile.TemporaryDirectory(prefix="scribbles-check-") as tmp:
        workdir = Path(tmp).resolve()
        with working_directory(workdir):
            try:
                technique = build(cls, params, workdir)
                return CHECKS[cls.family](technique, workdir, registry)
            except DryRunError as exc:
                return [str(exc)]
            except Exception as exc:  # a plugin bug: reported as a finding, never a crash of the kit
                return [f"dry run raised {type(exc).__name__}: {_first_line(exc)}"]


def check_technique(cls: Any, params: dict[str, Any] | None = None, registry: Registry | None = None) -> None:
    """Run ``cls`` through its family's contract on tiny synthetic data; raise TechniqueCheckError if it fails.

    Call it from a plugin's own tests, as scikit-learn's ``check_estimator``::

        def test_conforms():
            check_technique(EveryOther)
            check_technique(EveryOther, params={"offset": 1})
    """
    problems = technique_problems(cls, params, registry)
    if problems:
        raise TechniqueCheckError(cls, problems)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
