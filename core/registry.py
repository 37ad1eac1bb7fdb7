"""The registry: a pluggy plugin manager holding the built-in plugins and the installed ones.

Built-ins are listed with the techniques they contribute in ``BUILTIN_TECHNIQUES`` (module-level
metadata: a built-in module is imported, and its techniques checked, when one of its techniques is
first used, so listing and checking names imports neither torch nor pandas). Third-party plugins
come from the entry-point group ``scribbles.plugins``; every one of their techniques is checked when
it registers, not when it is first used.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.metadata as md
import importlib.util
import io
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel, ValidationError

from . import hookspecs
from ._docs import first_paragraph
from .config import error_text, truth_for_a_number
from .errors import ConfigError, PluginError
from .markers import FAMILIES, HOOK_API_VERSION, PROJECT
from .yaml_reader import clip

if TYPE_CHECKING:  # contracts imports numpy: imported when a technique is checked, not to list names
    from .contracts import Technique

ENTRY_POINT_GROUP = "scribbles.plugins"
AUTOLOAD_OFF_ENV = "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD"
STRICT_ENV = "SCRIBBLES_STRICT_PLUGINS"
BUILTIN_PROVIDER = "scribbles (built-in)"
#: The module (or plugin object) attribute where a plugin declares the plugin API version it needs.
API_VERSION_ATTRIBUTE = "SCRIBBLES_API_VERSION"

#: The built-in plugin modules (registered in this order, which carries no meaning) and the techniques
#: each contributes: (family, name, "defining.module:Class"). tests/test_registry.py keeps it equal to
#: what the modules' ``scribbles_techniques`` return.
BUILTIN_TECHNIQUES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "scribbles.plugins.data": (
        ("data", "file", "scribbles.plugins.data:FileSource"),
        ("data", "dvc", "scribbles.plugins.data:DvcSource"),
    ),
    "scribbles.plugins.splitters": (
        ("splitter", "kfold", "scribbles.plugins.splitters.rows:KFold"),
        ("splitter", "stratified_kfold", "scribbles.plugins.splitters.rows:StratifiedKFold"),
        ("splitter", "shuffle", "scribbles.plugins.splitters.rows:Shuffle"),
        ("splitter", "time_series", "scribbles.plugins.splitters.temporal:TimeSeries"),
        ("splitter", "group_kfold", "scribbles.plugins.splitters.grouped:GroupKFold"),
        ("splitter", "stratified_group_kfold", "scribbles.plugins.splitters.grouped:StratifiedGroupKFold"),
        ("splitter", "group_shuffle", "scribbles.plugins.splitters.grouped:GroupShuffle"),
        ("splitter", "leave_one_group_out", "scribbles.plugins.splitters.grouped:LeaveOneGroupOut"),
        ("splitter", "purged_group_time_series", "scribbles.plugins.splitters.temporal:PurgedGroupTimeSeries"),
    ),
    "scribbles.plugins.preprocess": (
        ("preprocess", "standard", "scribbles.plugins.preprocess:Standard"),
        ("preprocess", "robust", "scribbles.plugins.preprocess:Robust"),
        ("preprocess", "impute", "scribbles.plugins.preprocess:Impute"),
        ("preprocess", "one_hot", "scribbles.plugins.preprocess:OneHot"),
    ),
    "scribbles.plugins.models.baseline": (
        ("model", "mlp", "scribbles.plugins.models.baseline:MLP"),
        ("model", "gru", "scribbles.plugins.models.baseline:GRU"),
    ),
    "scribbles.plugins.models.sequence": (
        ("model", "cnn1d", "scribbles.plugins.models.sequence:Cnn1d"),
        ("model", "gru_attention", "scribbles.plugins.models.sequence:GRUAttention"),
        ("model", "transformer_encoder", "scribbles.plugins.models.sequence:TransformerEncoder"),
    ),
    "scribbles.plugins.models.representation": (
        ("model", "autoencoder", "scribbles.plugins.models.representation:Autoencoder"),
        ("model", "vae", "scribbles.plugins.models.representation:VAE"),
    ),
    "scribbles.plugins.models.classic": (
        ("model", "knn", "scribbles.plugins.models.classic:Knn"),
        ("model", "svm", "scribbles.plugins.models.classic:Svm"),
        ("model", "decision_tree", "scribbles.plugins.models.classic:DecisionTree"),
        ("model", "gaussian_mixture", "scribbles.plugins.models.classic:GaussianMixture"),
    ),
    "scribbles.plugins.image_models": (
        ("model", "cnn", "scribbles.plugins.image_models:CNN"),
    ),
    "scribbles.plugins.losses": (
        ("loss", "cross_entropy", "scribbles.plugins.losses:CrossEntropy"),
        ("loss", "supcon", "scribbles.plugins.losses:SupCon"),
        ("loss", "ctc", "scribbles.plugins.losses:CTC"),
        ("loss", "reconstruction", "scribbles.plugins.losses:Reconstruction"),
        ("loss", "mse", "scribbles.plugins.losses:Mse"),
        ("loss", "l1", "scribbles.plugins.losses:L1"),
        ("loss", "huber", "scribbles.plugins.losses:Huber"),
    ),
    "scribbles.plugins.strategies": (
        ("strategy", "single", "scribbles.plugins.strategies.single:Single"),
        ("strategy", "ddp", "scribbles.plugins.strategies.ddp:DDP"),
        ("strategy", "zero", "scribbles.plugins.strategies.zero:Zero"),
        ("strategy", "fsdp", "scribbles.plugins.strategies.fsdp:FSDP"),
        ("strategy", "sklearn", "scribbles.plugins.strategies.sklearn_fit:Sklearn"),
    ),
    "scribbles.plugins.tta": (
        ("tta", "hflip", "scribbles.plugins.tta.images:HFlip"),
        ("tta", "vflip", "scribbles.plugins.tta.images:VFlip"),
        ("tta", "rot90", "scribbles.plugins.tta.images:Rot90"),
        ("tta", "shift", "scribbles.plugins.tta.images:Shift"),
        ("tta", "crop", "scribbles.plugins.tta.images:Crop"),
        ("tta", "noise", "scribbles.plugins.tta.noise:Noise"),
        ("tta", "time_shift", "scribbles.plugins.tta.sequences:TimeShift"),
        ("tta", "scale", "scribbles.plugins.tta.sequences:Scale"),
        ("tta", "jitter", "scribbles.plugins.tta.noise:Jitter"),
        ("tta", "reverse", "scribbles.plugins.tta.sequences:Reverse"),
        ("tta", "compose", "scribbles.core.evaluation._compose:Compose"),
    ),
    "scribbles.plugins.metrics": (
        ("metric", "accuracy", "scribbles.plugins.metrics:Accuracy"),
        ("metric", "f1_macro", "scribbles.plugins.metrics:F1Macro"),
        ("metric", "log_loss", "scribbles.plugins.metrics:LogLoss"),
        ("metric", "reconstruction_mse", "scribbles.plugins.metrics:ReconstructionMSE"),
        ("metric", "balanced_accuracy", "scribbles.plugins.metrics:BalancedAccuracy"),
        ("metric", "precision_macro", "scribbles.plugins.metrics:PrecisionMacro"),
        ("metric", "recall_macro", "scribbles.plugins.metrics:RecallMacro"),
        ("metric", "roc_auc", "scribbles.plugins.metrics:RocAuc"),
        ("metric", "rmse", "scribbles.plugins.metrics:Rmse"),
        ("metric", "mae", "scribbles.plugins.metrics:Mae"),
        ("metric", "r2", "scribbles.plugins.metrics:R2"),
    ),
    "scribbles.plugins.trackers": (
        ("tracker", "mlflow", "scribbles.plugins.trackers.mlflow_tracker:MlflowTracker"),
    ),
}
BUILTIN_PLUGINS: tuple[str, ...] = tuple(BUILTIN_TECHNIQUES)

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
#: Methods a technique of each family must offer (checked by name, so plain Technique subclasses work).
_REQUIRED_METHODS: dict[str, tuple[str, ...]] = {
    "data": ("load",),
    "splitter": ("split",),
    "preprocess": ("transformer",),
    "model": ("build",),
    "loss": ("build",),
    "strategy": ("fit",),
    "tta": ("views",),
    "metric": ("compute",),
    "tracker": (),
}


class TechniqueInfo:
    """A registered technique and who provides it. A built-in's class is imported on first use of
    ``cls``; its family, name and summary are known without importing it."""

    def __init__(self, family: str, name: str, provider: str, target: str,
                 cls: type[Technique] | None = None, load: Callable[[], type[Technique]] | None = None) -> None:
        self.family, self.name, self.provider, self.target = family, name, provider, target
        self._cls, self._load = cls, load

    @property
    def cls(self) -> type[Technique]:
        """The technique class (importing its module, and checking its techniques, the first time)."""
        if self._cls is None:
            assert self._load is not None
            self._cls = self._load()
        return self._cls

    def summary(self) -> str:
        """The first paragraph of the class docstring, read from the source when the class is not imported."""
        if self._cls is not None:
            return self._cls.summary()
        return _source_summary(self.target)

    def __repr__(self) -> str:
        return f"TechniqueInfo({self.family}/{self.name}, {self.target}, {self.provider})"


@functools.cache
def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _source_summary(target: str) -> str:
    """The summary of built-in class ``module:Class`` read from its module's source (no import): the
    first paragraph of the class docstring, as ``Technique.summary`` gives it."""
    module, qualname = target.split(":")
    package, *parts = module.split(".")[1:]  # scribbles.<package>.<parts>: no parent package is imported
    spec = importlib.util.find_spec(f"scribbles.{package}")
    if spec is None or spec.origin is None:
        return ""
    root = Path(spec.origin).parent
    path = root.joinpath(*parts).with_suffix(".py")
    if not path.exists():
        path = root.joinpath(*parts, "__init__.py")
    found = re.search(rf'^class {re.escape(qualname)}\b.*?:\n\s+[rR]?"""(.*?)"""', _source(path), re.M | re.S)
    return first_paragraph(found[1]) if found else ""


class Registry(pluggy.PluginManager):
    """Every technique known to this process, by family and name; the plugin manager whose ``hook``
    calls the hooks (``registry.hook.scribbles_run_start(ctx=...)``)."""

    def __init__(self, strict: bool = False) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        #: One line per plugin that failed to load and was left out (non-strict mode).
        self.problems: list[str] = []
        #: Installed plugin distributions that ``plugins.deny`` kept out (named when a technique is unknown).
        self.denied: list[str] = []
        self._techniques: dict[tuple[str, str], TechniqueInfo] = {}
        self._providers: dict[int, str] = {}
        # Installed (entry-point) plugins are isolated: one that contributes a broken technique is
        # reported and left out instead of breaking every run (pytest#3784). Built-ins and plugins
        # passed in by the caller still fail loudly.
        self._isolated: set[int] = set()
        self._strict = strict
        self._pending_builtins: set[str] = set()

    def provider_of(self, plugin: Any) -> str:
        """Who provides ``plugin``: a distribution and version, the built-in marker, or a module name."""
        return self._providers.get(id(plugin)) or _module_provider(plugin)

    def add_builtins(self, modules: dict[str, tuple[tuple[str, str, str], ...]]) -> None:
        """List the techniques of built-in ``modules`` from their metadata; each module is imported
        and registered when one of its techniques' ``cls`` is first asked for."""
        for module, entries in modules.items():
            self._pending_builtins.add(module)
            for family, name, target in entries:
                self._techniques[(family, name)] = TechniqueInfo(
                    family, name, BUILTIN_PROVIDER, target,
                    load=functools.partial(self._import_builtin, module, (family, name)))

    def import_all(self) -> None:
        """Import and register every built-in module not imported yet (``plugins check`` needs them all)."""
        for module in sorted(self._pending_builtins):
            self._import_builtin(module, None)

    def _import_builtin(self, module: str, key: tuple[str, str] | None) -> type[Technique]:
        if module in self._pending_builtins:
            self._pending_builtins.discard(module)
            plugin = importlib.import_module(module)
            _register(self, plugin, module, BUILTIN_PROVIDER)
            listed = {(f, n) for f, n, _ in BUILTIN_TECHNIQUES.get(module, ())}
            contributed = self._contributed(plugin)
            if {(c.family, c.name) for c in contributed} != listed:
                raise PluginError(f"{module} contributes {sorted((c.family, c.name) for c in contributed)} but "
                                  f"BUILTIN_TECHNIQUES lists {sorted(listed)}; update the table in core/registry.py")
            for cls in contributed:
                self._techniques[(cls.family, cls.name)]._cls = cls
        return self._techniques[key].cls if key is not None else object  # type: ignore[return-value]

    def _contributed(self, plugin: Any) -> list[type[Technique]]:
        """The checked classes ``plugin``'s ``scribbles_techniques`` returns (built-in: every problem raises)."""
        found: list[type[Technique]] = []
        for impl in self.hook.scribbles_techniques.get_hookimpls():
            if impl.plugin is plugin:
                for cls in impl.function() or ():
                    problem = technique_problem(cls)
                    if problem:
                        raise PluginError(f"plugin {BUILTIN_PROVIDER}: {problem}")
                    found.append(cls)
        return found

    def collect(self) -> None:
        """Check and take in the techniques of every registered plugin not taken in yet."""
        for impl in self.hook.scribbles_techniques.get_hookimpls():
            provider = self.provider_of(impl.plugin)
            if getattr(impl.plugin, "__name__", None) in BUILTIN_TECHNIQUES:
                continue
            try:
                self._collect_one(impl, provider)
            except PluginError as exc:
                if self._strict or id(impl.plugin) not in self._isolated:
                    raise
                self.problems.append(f"{exc}; left out")
                self.unregister(impl.plugin)

    def _collect_one(self, impl: Any, provider: str) -> None:
        try:
            returned = impl.function()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit included: a plugin never ends the command
            raise PluginError(
                f"plugin {provider}: scribbles_techniques() raised {type(exc).__name__}: {exc}; "
                f"fix the plugin or block it with `plugins: {{deny: [{_dist_name(provider)}]}}`"
            ) from exc
        contributed = _returned_classes(returned, provider)
        # Check every class first so that a plugin contributes all of its techniques or none.
        seen: set[tuple[str, str]] = set()
        for cls in contributed:
            self._check(cls, provider)
            if (cls.family, cls.name) in seen:
                raise PluginError(f"plugin {provider}: contributes {cls.family} '{cls.name}' twice")
            seen.add((cls.family, cls.name))
        for cls in contributed:
            self._techniques[(cls.family, cls.name)] = TechniqueInfo(
                cls.family, cls.name, provider, f"{cls.__module__}:{cls.__qualname__}", cls=cls)

    def _check(self, cls: Any, provider: str) -> None:
        problem = technique_problem(cls)
        if problem:
            raise PluginError(f"plugin {provider}: {problem}")
        key = (cls.family, cls.name)
        if key in self._techniques:
            other = self._techniques[key].provider
            raise PluginError(
                f"{cls.family} '{cls.name}' is provided twice: by {other} and by {provider}; "
                f"uninstall one, or block one with `plugins: {{deny: [{_dist_name(provider)}]}}`"
            )

    def techniques(self, family: str | None = None) -> list[TechniqueInfo]:
        """Registered techniques, sorted by family then name, optionally of one family."""
        infos = [i for i in self._techniques.values() if family is None or i.family == family]
        return sorted(infos, key=lambda i: (FAMILIES.index(i.family), i.name))

    def names(self, family: str) -> list[str]:
        """The names registered in ``family``, sorted."""
        return sorted(name for fam, name in self._techniques if fam == family)

    def get(self, family: str, name: str, field: str | None = None) -> type[Technique]:
        """The class registered as ``family``/``name``; an unknown name says what exists."""
        if family not in FAMILIES:
            raise ConfigError(f"unknown family '{family}'; families: {', '.join(FAMILIES)}", field)
        info = self._techniques.get((family, name))
        if info is None:
            blocked = f"; plugins.deny leaves out {', '.join(self.denied)}, which may provide it" if self.denied else ""
            raise ConfigError(unknown_name_message(family, name, self.names(family)) + blocked, field)
        return info.cls

    def create(self, family: str, name: str, field: str | None = None, **fields: Any) -> Technique:
        """An instance of ``family``/``name`` built from ``fields`` validated by its ``Params``."""
        cls = self.get(family, name, field)
        return cls(validate_params(cls, fields, field or family))


def unknown_name_message(family: str, name: str, available: Sequence[str]) -> str:
    """"unknown model 'mlpp'; did you mean 'mlp'? available: ..." """
    close = difflib.get_close_matches(str(name), available, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ";"
    return f"unknown {family} '{name}'{hint} available: {', '.join(available) or '(none)'}"


def validate_params(cls: type[Technique], fields: dict[str, Any], where: str) -> BaseModel:
    """``cls.Params(**fields)``, with pydantic's errors turned into one ConfigError per field.

    A field the ``Params`` does not know is an error even when the plugin left pydantic's default
    (``extra="ignore"``): a misspelt ``offst`` was dropped and the run went on with the default. Only a
    ``Params`` that says ``extra="allow"`` takes fields it does not declare.
    """
    truths = [f"{where}.{name}: {problem} (got {value})" for name, value in fields.items()
              if name in cls.Params.model_fields
              and (problem := truth_for_a_number(value, cls.Params.model_fields[name].annotation))]
    if truths:  # `split.n_splits: true` went on as 1
        raise ConfigError("; ".join(truths))
    if cls.Params.model_config.get("extra") in (None, "ignore"):
        known = set(cls.Params.model_fields) | {f.alias for f in cls.Params.model_fields.values() if f.alias}
        unknown = [name for name in fields if name not in known]
        if unknown:
            raise ConfigError("; ".join(_unknown_field(f"{where}.{name}", cls, name) for name in unknown))
    try:
        return cls.Params(**fields)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(exc, cls, where)) from None


def _unknown_field(path: str, cls: type[Technique], name: Any) -> str:
    close = difflib.get_close_matches(str(name), list(cls.Params.model_fields), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    known = ", ".join(cls.Params.model_fields) or "(none)"
    return f"{path}: unknown field for {cls.family} '{cls.name}'; known fields: {known}{hint}"


def _describe_validation(exc: ValidationError, cls: type[Technique], where: str) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join([where, *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            lines.append(_unknown_field(path, cls, err["loc"][-1]))
        elif err["type"] == "missing":
            lines.append(f"{path}: required by {cls.family} '{cls.name}'")
        else:
            lines.append(f"{path}: {error_text(err)} (got {clip(err.get('input'))})")
    return "; ".join(lines)


def _returned_classes(returned: Any, provider: str) -> list[Any]:
    """What a ``scribbles_techniques()`` returned, as a list; a PluginError when it is not a list or tuple
    of classes (None: a forgotten ``return``; one bare class; a dict or a string)."""
    if isinstance(returned, list | tuple | set | frozenset):
        return list(returned)
    what = "None (no return statement?)" if returned is None else \
        f"the class {returned.__qualname__} itself" if isinstance(returned, type) else f"a {type(returned).__name__}"
    raise PluginError(f"plugin {provider}: scribbles_techniques() returned {what}; return a list of technique "
                      "classes, like `return [MySplitter]`")


def technique_problem(cls: Any) -> str | None:
    """What is wrong with a contributed technique class, or None when it fits the contract."""
    if isinstance(cls, str):
        return f"scribbles_techniques() must return classes, got the string {cls!r}; return the class, not its name"
    if not isinstance(cls, type):
        return (
            f"scribbles_techniques() must return classes, got the instance {cls!r}; "
            f"return the class itself ({type(cls).__name__}), not {type(cls).__name__}()"
        )
    from .contracts import FAMILY_BASES, Technique

    label = f"{cls.__module__}.{cls.__qualname__}"
    if not issubclass(cls, Technique):
        return f"{label} is not a subclass of scribbles.core.Technique"
    if cls.family not in FAMILIES:
        return f"{label}.family is {cls.family!r}; it must be one of {', '.join(FAMILIES)}"
    base = FAMILY_BASES[cls.family]
    if not issubclass(cls, base):
        # The family's base declares what the run reads (a splitter's guards, a model's strategy...).
        return (f"{label} names family {cls.family!r} but does not subclass scribbles.core.{base.__name__}; "
                f"write `class {cls.__name__}({base.__name__})` (from scribbles.core import {base.__name__})")
    if not isinstance(cls.name, str) or not _SNAKE.match(cls.name):
        return f"{label}.name is {cls.name!r}; it must be snake_case, like 'my_splitter'"
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
        return f"{label}.Params must be a pydantic BaseModel subclass"
    if not cls.summary():
        return f"{label} has no docstring; add a one-line summary for `scribbles plugins`"
    for method in _REQUIRED_METHODS[cls.family]:
        if getattr(cls, method, None) is None or getattr(getattr(cls, method), "__isabstractmethod__", False):
            return f"{label} is a {cls.family} technique but does not implement {method}()"
    return _hook_method_problem(cls, label)


def _hook_method_problem(cls: type, label: str) -> str | None:
    """A technique's hook method that pluggy would ignore or refuse only once the run registers it (a
    tracker's): a ``scribbles_*`` name matching no hook, a hook without ``@hookimpl``, an argument the
    spec does not have. Found when the plugin loads (exit 2), not silently mid-run."""
    import inspect

    for attr in dir(cls):
        method = getattr(cls, attr, None)
        marked = hasattr(method, f"{PROJECT}_impl")
        if not callable(method) or not (marked or attr.startswith(f"{PROJECT}_")):
            continue
        if attr not in HOOK_NAMES:
            close = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return f"{label}: hook {attr} matches no hook spec; {hint}hooks: {', '.join(HOOK_NAMES)}"
        if not marked:
            return (f"{label}.{attr} is not marked as a hook, so it is never called; decorate it with "
                    "@hookimpl (from scribbles.core import hookimpl)")
        wanted = set(inspect.signature(getattr(hookspecs, attr)).parameters)
        extra = [name for name in inspect.signature(method).parameters if name not in wanted | {"self"}]
        if extra:
            return (f"{label}.{attr} takes {', '.join(repr(n) for n in extra)}, which the hook does not pass; "
                    f"its arguments are ({', '.join(sorted(wanted))}), keyword-only by name")
    return None


# ---------------------------------------------------------------- loading


def load_registry(
    deny: Iterable[str] = (),
    autoload: bool | None = None,
    strict: bool | None = None,
    extra_plugins: Iterable[Any] = (),
) -> Registry:
    """A registry with the built-ins, the allowed entry-point plugins and ``extra_plugins``.

    ``autoload`` defaults to on unless ``SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD=1``; ``strict`` (default:
    ``SCRIBBLES_STRICT_PLUGINS=1``) makes a plugin that fails to load an error instead of a warning.
    """
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_OFF_ENV, "") not in ("1", "true", "yes")
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") in ("1", "true", "yes")
    registry = Registry(strict)
    registry.add_builtins(BUILTIN_TECHNIQUES)
    if autoload:
        registry.problems, isolated = _load_entry_points(registry, {d.lower() for d in deny}, strict)
        registry._isolated = {id(plugin) for plugin in isolated}
    for plugin in extra_plugins:
        provider = getattr(plugin, "__name__", repr(plugin))
        mismatch = _api_version_problem(plugin, provider)
        if mismatch:
            raise PluginError(mismatch)
        _register(registry, plugin, None, provider)
    try:
        registry.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError("; ".join(hook_problems(registry, exc.plugin)) or str(exc)) from None
    registry.collect()
    return registry


def _load_entry_points(
    pm: Registry, deny: set[str], strict: bool
) -> tuple[list[str], list[Any]]:
    """Register every allowed entry-point plugin; one that fails is a problem line (an error if strict)."""
    problems: list[str] = []
    loaded: list[Any] = []
    denied = {_normalise(d) for d in deny}
    seen: dict[str, str] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.value
        seen[_normalise(dist_name)] = dist_name
        if _normalise(dist_name) in denied:
            if dist_name not in pm.denied:  # one distribution may have several entry points
                pm.denied.append(dist_name)
            continue
        provider = f"{dist_name} {dist.version}" if dist is not None else dist_name
        block = f"fix or uninstall it, or block it with `plugins: {{deny: [{dist_name}]}}`"
        message = ""
        try:
            plugin = _import_isolated(ep)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit (sys.exit, argparse) and the like too: one problem line
            reason = str(exc).splitlines()[0] if str(exc) else ""
            if isinstance(exc, SystemExit):
                reason = f"{reason or exc.code} (the module exits when imported: sys.exit() or parse_args())"
            message = (
                f"plugin {provider} (entry point '{ep.name} = {ep.value}') could not be loaded: "
                f"{type(exc).__name__}: {reason}; {block}"
            )
        else:
            message = _api_version_problem(plugin, provider)
            if not message:
                try:
                    _register(pm, plugin, ep.name, provider)
                except PluginError as exc:
                    message = f"{exc}; {block}"
                else:
                    unknown = hook_problems(pm, plugin)
                    if unknown:
                        pm.unregister(plugin)
                        message = "; ".join(unknown)
                    else:
                        loaded.append(plugin)
        if message:
            if strict:
                raise PluginError(message)
            problems.append(message)
    for name in sorted(denied - set(seen)):  # a typo in plugins.deny kept nothing out, silently
        close = difflib.get_close_matches(name, list(seen), n=1)
        hint = f"did you mean {seen[close[0]]}? " if close else ""
        problems.append(f"plugins.deny: no installed plugin distribution is called {name!r}; {hint}installed: "
                        f"{', '.join(sorted(seen.values())) or '(none)'}")
    return problems, loaded


def _import_isolated(ep: md.EntryPoint) -> Any:
    """``ep.load()`` with what the module prints while importing held back: shown when the import
    works, dropped when it fails (a usage message of the plugin's own argparse, say), since the problem
    line says what happened."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        plugin = ep.load()
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())
    return plugin


def declared_api_version(plugin: Any) -> Any:
    """What ``plugin`` declares as ``SCRIBBLES_API_VERSION`` (None when it declares nothing)."""
    return getattr(plugin, API_VERSION_ATTRIBUTE, None)


def _api_version_problem(plugin: Any, provider: str) -> str:
    """'' when ``plugin`` fits this release's plugin API, else one line saying what to do."""
    wanted = declared_api_version(plugin)
    if wanted is None:
        return ""
    versions = list(wanted) if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
    if not versions or not all(isinstance(v, int) and not isinstance(v, bool) for v in versions):
        return (
            f"plugin {provider}: {API_VERSION_ATTRIBUTE} is {wanted!r}; it must be an int "
            f"(or a list of ints) naming the plugin API versions it supports, e.g. {HOOK_API_VERSION}"
        )
    if HOOK_API_VERSION in versions:
        return ""
    needs = " or ".join(str(v) for v in sorted(versions))
    return (
        f"plugin {provider} needs scribbles plugin API {needs}, but scribbles {_version('scribbles')} "
        f"provides API {HOOK_API_VERSION}; install a release of the plugin made for API "
        f"{HOOK_API_VERSION}, or a scribbles that provides API {needs}"
    )


#: Every hook name a plugin may implement (the specs in hookspecs.py).
HOOK_NAMES: tuple[str, ...] = tuple(
    name for name in dir(hookspecs) if name.startswith(f"{PROJECT}_") and callable(getattr(hookspecs, name))
)


def hook_problems(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """One line per hookimpl of ``plugin`` whose name matches no hook spec (a misspelt hook); ``pm`` is a
    Registry or a bare pluggy manager with the specs (the conformance kit's)."""
    provider = pm.provider_of(plugin) if isinstance(pm, Registry) else _module_provider(plugin)
    lines = []
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.has_spec():
            continue
        if all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
            continue
        close = difflib.get_close_matches(caller.name, HOOK_NAMES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        lines.append(
            f"plugin {provider}: hook {caller.name} matches no hook spec; {hint}"
            f"hooks: {', '.join(HOOK_NAMES)}"
        )
    return lines


def _register(
    pm: Registry, plugin: Any, name: str | None, provider: str
) -> None:
    if isinstance(plugin, type) and _has_hookimpls(plugin):
        raise PluginError(
            f"plugin {provider}: {plugin.__qualname__} is a class; register an instance or a module "
            f"(did you forget the ()?)"
        )
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        # pluggy's message spans lines (definition, then the reason); a problem is one line.
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise PluginError(f"plugin {provider}: {reason}; every hook takes only the spec's arguments (ctx)") from None
    except ValueError as exc:  # already registered under that name
        raise PluginError(f"plugin {provider}: {exc}") from None
    if provider != BUILTIN_PROVIDER:
        # pluggy's list_plugin_distinfo() only covers load_setuptools_entrypoints; keep our own map.
        pm._providers[id(plugin)] = provider


def _has_hookimpls(obj: Any) -> bool:
    return any(hasattr(getattr(obj, attr, None), f"{PROJECT}_impl") for attr in dir(obj))


def _module_provider(plugin: Any) -> str:
    """The built-in marker for scribbles' own modules and objects, else the plugin's module name."""
    module = getattr(plugin, "__name__", "") or type(plugin).__module__
    if module.startswith("scribbles."):
        return BUILTIN_PROVIDER
    return module or repr(plugin)


def _dist_name(provider: str) -> str:
    return provider.split(" ")[0]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions() -> dict[str, str]:
    """Installed distributions that provide scribbles plugins, name -> version (for lineage tags)."""
    found = {"scribbles": _version("scribbles")}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None:
            found[ep.dist.metadata["Name"]] = ep.dist.version
    return found


def plugin_packages() -> dict[str, str]:
    """Top-level package of each installed plugin's entry point -> its distribution's name (not scribbles')."""
    found = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        package = ep.module.split(".")[0]
        if ep.dist is not None and package != PROJECT:
            found[package] = ep.dist.metadata["Name"]
    return found


def raised_in_plugin(exc: BaseException) -> tuple[str, str] | None:
    """(distribution, "file:line in function") of the innermost frame of ``exc``'s traceback that is an
    installed plugin's code; None when no plugin's code is on it (the error is scribbles' or a library's)."""
    import traceback

    packages = plugin_packages()
    found = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        package = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if package in packages:
            found = packages[package], f"{Path(frame.f_code.co_filename).name}:{line} in {frame.f_code.co_name}"
    return found


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


_DEFAULT: Registry | None = None
#: Problem lines printed already: a command may build a registry for its config more than once.
_WARNED: set[str] = set()


def _warn(registry: Registry) -> Registry:
    for line in registry.problems:
        if line not in _WARNED:
            _WARNED.add(line)
            print(f"warning: {line}", file=sys.stderr)
    return registry


def default_registry() -> Registry:
    """The process-wide registry with default discovery (built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = _warn(load_registry())
    return _DEFAULT


def registry_for(config: Any) -> Registry:
    """The registry for an experiment config: the default one, or a fresh one when
    ``config.plugins.deny`` keeps some plugin distributions out (its problems printed too: a misspelt
    name in the deny list, say)."""
    deny = config.plugins.deny
    return _warn(load_registry(deny=deny)) if deny else default_registry()


def create(family: str, name: str, **fields: Any) -> Technique:
    """A technique instance from the default registry: ``create("splitter", "kfold", n_splits=3)``."""
    return default_registry().create(family, name, **fields)
