"""The registry: one pluggy plugin manager, the built-in plugins and the installed ones.

Built-ins are listed in ``BUILTIN_PLUGINS``; third-party plugins come from the entry-point group
``scribbles.plugins``. Every technique is checked when it registers, not when it is first used.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata as md
import io
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from . import hookspecs
from .contracts import FAMILIES, FAMILY_BASES, Technique
from .errors import ConfigError, PluginError
from .markers import HOOK_API_VERSION, PROJECT

ENTRY_POINT_GROUP = "scribbles.plugins"
AUTOLOAD_OFF_ENV = "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD"
STRICT_ENV = "SCRIBBLES_STRICT_PLUGINS"
BUILTIN_PROVIDER = "scribbles (built-in)"
#: The module (or plugin object) attribute where a plugin declares the plugin API version it needs.
API_VERSION_ATTRIBUTE = "SCRIBBLES_API_VERSION"

#: The built-in plugin modules, registered in this order (order carries no meaning).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "scribbles.plugins.data",
    "scribbles.plugins.splitters",
    "scribbles.plugins.preprocess",
    "scribbles.plugins.models.baseline",
    "scribbles.plugins.models.sequence",
    "scribbles.plugins.models.representation",
    "scribbles.plugins.models.classic",
    "scribbles.plugins.image_models",
    "scribbles.plugins.losses",
    "scribbles.plugins.strategies",
    "scribbles.plugins.tta",
    "scribbles.plugins.metrics",
    "scribbles.plugins.trackers",
)

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


@dataclass(frozen=True)
class TechniqueInfo:
    """A registered technique and who provides it."""

    cls: type[Technique]
    provider: str

    @property
    def family(self) -> str:
        return self.cls.family

    @property
    def name(self) -> str:
        return self.cls.name


class Registry:
    """Every technique known to this process, by family and name, plus the hook caller."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        problems: Sequence[str] = (),
        isolated: Iterable[Any] = (),
        strict: bool = False,
    ) -> None:
        self.pm = pm
        #: One line per plugin that failed to load and was left out (non-strict mode).
        self.problems: list[str] = list(problems)
        self._techniques: dict[tuple[str, str], TechniqueInfo] = {}
        # Installed (entry-point) plugins are isolated: one that contributes a broken technique is
        # reported and left out instead of breaking every run (pytest#3784). Built-ins and plugins
        # passed in by the caller still fail loudly.
        self._isolated = {id(plugin) for plugin in isolated}
        self._strict = strict
        self._collect()

    @property
    def hook(self) -> Any:
        """The hook caller, ``registry.hook.scribbles_run_start(ctx=...)``."""
        return self.pm.hook

    def _collect(self) -> None:
        for impl in self.pm.hook.scribbles_techniques.get_hookimpls():
            provider = _provider_of(self.pm, impl.plugin)
            try:
                self._collect_one(impl, provider)
            except PluginError as exc:
                if self._strict or id(impl.plugin) not in self._isolated:
                    raise
                self.problems.append(f"{exc}; left out")
                self.pm.unregister(impl.plugin)

    def _collect_one(self, impl: Any, provider: str) -> None:
        try:
            contributed = list(impl.function() or ())
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit included: a plugin never ends the command
            raise PluginError(
                f"plugin {provider}: scribbles_techniques() raised {type(exc).__name__}: {exc}; "
                f"fix the plugin or block it with `plugins: {{deny: [{_dist_name(provider)}]}}`"
            ) from exc
        # Check every class first so that a plugin contributes all of its techniques or none.
        seen: set[tuple[str, str]] = set()
        for cls in contributed:
            self._check(cls, provider)
            if (cls.family, cls.name) in seen:
                raise PluginError(f"plugin {provider}: contributes {cls.family} '{cls.name}' twice")
            seen.add((cls.family, cls.name))
        for cls in contributed:
            self._techniques[(cls.family, cls.name)] = TechniqueInfo(cls, provider)

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
            raise ConfigError(unknown_name_message(family, name, self.names(family)), field)
        return info.cls

    def create(self, family: str, name: str, field: str | None = None, **fields: Any) -> Technique:
        """An instance of ``family``/``name`` built from ``fields`` validated by its ``Params``."""
        cls = self.get(family, name, field)
        return cls(validate_params(cls, fields, field or family))


def unknown_name_message(family: str, name: str, available: Sequence[str]) -> str:
    """"unknown model 'mlpp'; did you mean 'mlp'? available: ..." """
    close = difflib.get_close_matches(str(name), available, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {family} '{name}'{hint} available: {', '.join(available) or '(none)'}"


def validate_params(cls: type[Technique], fields: dict[str, Any], where: str) -> BaseModel:
    """``cls.Params(**fields)``, with pydantic's errors turned into one ConfigError per field."""
    try:
        return cls.Params(**fields)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(exc, cls, where)) from None


def _describe_validation(exc: ValidationError, cls: type[Technique], where: str) -> str:
    known = ", ".join(cls.Params.model_fields) or "(none)"
    lines = []
    for err in exc.errors():
        path = ".".join([where, *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), list(cls.Params.model_fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"{path}: unknown field for {cls.family} '{cls.name}'; known fields: {known}{hint}")
        elif err["type"] == "missing":
            lines.append(f"{path}: required by {cls.family} '{cls.name}'")
        else:
            lines.append(f"{path}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def technique_problem(cls: Any) -> str | None:
    """What is wrong with a contributed technique class, or None when it fits the contract."""
    if not isinstance(cls, type):
        return (
            f"scribbles_techniques() must return classes, got the instance {cls!r}; "
            f"return the class itself ({type(cls).__name__}), not {type(cls).__name__}()"
        )
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
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        _register(pm, importlib.import_module(module_name), module_name, BUILTIN_PROVIDER)
    problems: list[str] = []
    isolated: list[Any] = []
    if autoload:
        problems, isolated = _load_entry_points(pm, {d.lower() for d in deny}, strict)
    for plugin in extra_plugins:
        provider = getattr(plugin, "__name__", repr(plugin))
        mismatch = _api_version_problem(plugin, provider)
        if mismatch:
            raise PluginError(mismatch)
        _register(pm, plugin, None, provider)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError("; ".join(hook_problems(pm, exc.plugin)) or str(exc)) from None
    return Registry(pm, problems, isolated, strict)


def _load_entry_points(
    pm: pluggy.PluginManager, deny: set[str], strict: bool
) -> tuple[list[str], list[Any]]:
    """Register every allowed entry-point plugin; one that fails is a problem line (an error if strict)."""
    problems: list[str] = []
    loaded: list[Any] = []
    denied = {_normalise(d) for d in deny}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.value
        if _normalise(dist_name) in denied:
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
    """One line per hookimpl of ``plugin`` whose name matches no hook spec (a misspelt hook)."""
    provider = _provider_of(pm, plugin)
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
    pm: pluggy.PluginManager, plugin: Any, name: str | None, provider: str
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
        pm._scribbles_providers = {**getattr(pm, "_scribbles_providers", {}), id(plugin): provider}


def _has_hookimpls(obj: Any) -> bool:
    return any(hasattr(getattr(obj, attr, None), f"{PROJECT}_impl") for attr in dir(obj))


def _provider_of(pm: pluggy.PluginManager, plugin: Any) -> str:
    providers = getattr(pm, "_scribbles_providers", {})
    if id(plugin) in providers:
        return providers[id(plugin)]
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


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry with default discovery (built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_registry()
        for line in _DEFAULT.problems:
            print(f"warning: {line}", file=sys.stderr)
    return _DEFAULT


def registry_for(config: Any) -> Registry:
    """The registry for an experiment config: the default one, or a fresh one when
    ``config.plugins.deny`` keeps some plugin distributions out."""
    deny = config.plugins.deny
    return load_registry(deny=deny) if deny else default_registry()


def create(family: str, name: str, **fields: Any) -> Technique:
    """A technique instance from the default registry: ``create("splitter", "kfold", n_splits=3)``."""
    return default_registry().create(family, name, **fields)
