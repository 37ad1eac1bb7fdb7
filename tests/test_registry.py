"""The registry: built-ins, entry points, duplicates, unknown names, broken plugins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import fake_dist
from pydantic import BaseModel
from scribbles.core import (
    FAMILIES,
    ConfigError,
    Dataset,
    PluginError,
    Splitter,
    Technique,
    create,
    hookimpl,
    load_registry,
)
from scribbles.core.registry import BUILTIN_PROVIDER


class _Plugin:
    """A plugin object contributing the given technique classes."""

    def __init__(self, *classes: type) -> None:
        self.classes = classes
        self.__name__ = "test-plugin"

    @hookimpl
    def scribbles_techniques(self) -> list[type]:
        return list(self.classes)


class EveryOther(Splitter):
    """Alternate rows between two folds."""

    name = "every_other"

    class Params(BaseModel):
        offset: int = 0

    def split(self, dataset: Dataset):  # pragma: no cover - not called here
        yield from ()


def test_builtins_cover_every_family() -> None:
    """Each family has at least one built-in, all provided by scribbles itself."""
    registry = load_registry(autoload=False)
    families = {info.family for info in registry.techniques()}
    assert families == set(FAMILIES)
    assert {i.provider for i in registry.techniques()} == {BUILTIN_PROVIDER}
    assert {"kfold", "group_kfold", "time_series"} <= set(registry.names("splitter"))


def test_extra_plugin_technique_is_created_with_params() -> None:
    """A contributed technique is built as cls(cls.Params(**fields))."""
    registry = load_registry(autoload=False, extra_plugins=[_Plugin(EveryOther)])
    splitter = registry.create("splitter", "every_other", offset=1)
    assert isinstance(splitter, EveryOther)
    assert splitter.params.offset == 1


def test_duplicate_name_names_both_providers() -> None:
    """Two techniques with one family and name are refused, naming both providers."""
    clash = type("KFold2", (EveryOther,), {"name": "kfold", "__doc__": "Another kfold."})
    with pytest.raises(PluginError) as err:
        load_registry(autoload=False, extra_plugins=[_Plugin(clash)])
    message = str(err.value)
    assert "splitter 'kfold' is provided twice" in message
    assert BUILTIN_PROVIDER in message and "test-plugin" in message
    assert "deny" in message


def test_unknown_name_suggests_closest() -> None:
    """An unknown name lists the family's names and the closest match."""
    registry = load_registry(autoload=False)
    with pytest.raises(ConfigError) as err:
        registry.create("splitter", "group_kfld", field="split")
    message = str(err.value)
    assert "did you mean 'group_kfold'" in message
    names = ", ".join(registry.names("splitter"))  # every splitter, in the registry's own order
    assert names in message
    assert message.startswith("split:")


def test_unknown_param_field_is_an_error() -> None:
    """An unknown field is refused with the technique's known fields."""
    registry = load_registry(autoload=False)
    with pytest.raises(ConfigError) as err:
        registry.create("splitter", "kfold", field="split", n_split=3)
    assert "split.n_split: unknown field for splitter 'kfold'" in str(err.value)
    assert "n_splits" in str(err.value)


def test_misspelt_hook_fails_check_pending() -> None:
    """A hookimpl whose name matches no spec is named at load time."""

    class Misspelt:
        __name__ = "misspelt"

        @hookimpl
        def scribbles_fold_strat(self, ctx: object) -> None:
            pass

    with pytest.raises(PluginError, match="scribbles_fold_strat"):
        load_registry(autoload=False, extra_plugins=[Misspelt()])


def test_hook_with_argument_not_in_spec_is_refused() -> None:
    """A hook signature with arguments the spec lacks fails when it registers."""

    class BadArgs:
        __name__ = "bad-args"

        @hookimpl
        def scribbles_run_start(self, ctx: object, extra: int) -> None:
            pass

    with pytest.raises(PluginError, match="extra"):
        load_registry(autoload=False, extra_plugins=[BadArgs()])


def test_class_registered_instead_of_instance() -> None:
    """Registering a plugin class instead of an instance says 'did you forget the ()?'."""
    with pytest.raises(PluginError, match=r"did you forget the \(\)"):
        load_registry(autoload=False, extra_plugins=[_Plugin])


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"__doc__": None}, "no docstring"),
        ({"name": "Bad-Name"}, "snake_case"),
        ({"family": "optimizer"}, "must be one of"),
    ],
)
def test_malformed_technique_is_refused(attrs: dict, expected: str) -> None:
    """Technique classes are checked when they register."""
    broken = type("Broken", (EveryOther,), {"__doc__": "Doc.", **attrs})
    with pytest.raises(PluginError, match=expected):
        load_registry(autoload=False, extra_plugins=[_Plugin(broken)])


def test_instance_returned_instead_of_class() -> None:
    """scribbles_techniques must return classes; an instance is named with the fix."""
    with pytest.raises(PluginError, match="must return classes"):
        load_registry(autoload=False, extra_plugins=[_Plugin(EveryOther())])


PLUGIN_SOURCE = '''
    from pydantic import BaseModel
    from scribbles.core import Splitter, hookimpl

    class Halves(Splitter):
        """Split rows into two halves."""
        name = "halves"
        class Params(BaseModel):
            n_splits: int = 2
        def split(self, dataset):
            yield from ()

    @hookimpl
    def scribbles_techniques():
        return [Halves]
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary site directory on sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in ("scribbles_halves", "scribbles_broken"):
        sys.modules.pop(module, None)


def test_entry_point_plugin_is_discovered_with_provider(site: Path) -> None:
    """A plugin from the scribbles.plugins entry-point group is loaded with its distribution."""
    fake_dist(site, "scribbles-halves", PLUGIN_SOURCE, version="0.3.0")
    registry = load_registry(autoload=True)
    info = next(i for i in registry.techniques("splitter") if i.name == "halves")
    assert info.provider == "scribbles-halves 0.3.0"
    assert load_registry(autoload=False).names("splitter").count("halves") == 0
    assert "halves" not in load_registry(autoload=True, deny=["scribbles-halves"]).names("splitter")


def test_broken_plugin_is_reported_and_others_load(site: Path) -> None:
    """A plugin that fails to import is reported by distribution; strict mode makes it an error."""
    fake_dist(site, "scribbles-halves", PLUGIN_SOURCE, version="0.3.0")
    fake_dist(site, "scribbles-broken", "import not_a_module_anywhere\n", version="0.3.0")
    registry = load_registry(autoload=True)
    assert "halves" in registry.names("splitter")
    assert any("scribbles-broken 0.3.0" in p and "ModuleNotFoundError" in p for p in registry.problems)
    with pytest.raises(PluginError, match="scribbles-broken"):
        load_registry(autoload=True, strict=True)


def test_create_uses_default_registry() -> None:
    """scribbles.core.create builds a technique from the default registry."""
    splitter = create("splitter", "kfold", n_splits=3)
    assert isinstance(splitter, Technique)
    assert splitter.params.n_splits == 3


def test_builtins_are_listed_from_metadata_that_matches_the_modules() -> None:
    """Names and summaries come from BUILTIN_TECHNIQUES and the sources without importing a built-in
    module; once imported, every module contributes exactly what the table lists (import_all checks)
    and each summary read from the source is the class's own."""
    from scribbles.core.registry import BUILTIN_TECHNIQUES

    registry = load_registry(autoload=False)
    assert registry._pending_builtins == set(BUILTIN_TECHNIQUES)
    listed = {(i.family, i.name): i.summary() for i in registry.techniques()}
    assert registry._pending_builtins == set(BUILTIN_TECHNIQUES)  # listing imported nothing
    registry.import_all()
    assert not registry._pending_builtins
    assert listed == {(i.family, i.name): i.cls.summary() for i in registry.techniques()}
    assert all(listed.values())
