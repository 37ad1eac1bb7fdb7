"""Installed plugins are isolated: each broken one is one problem line and the rest still load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fake_dist as install_fake
from pydantic import BaseModel
from scribbles.core import HOOK_API_VERSION, PluginError, Splitter, hookimpl, load_registry
from scribbles.core.registry import BUILTIN_PROVIDER


def fake_dist(site: Path, name: str, source: str) -> None:
    """A distribution at version 1.2.0 (the version the messages below name)."""
    install_fake(site, name, source, version="1.2.0")


GOOD = '''
    from pydantic import BaseModel
    from scribbles.core import Splitter, hookimpl
    SCRIBBLES_API_VERSION = {api}

    class Halves(Splitter):
        """Two halves."""
        name = "{name}"
        class Params(BaseModel):
            n_splits: int = 2
        def split(self, dataset):
            yield from ()

    @hookimpl
    def scribbles_techniques():
        return [Halves]
'''

BROKEN = {
    "scribbles-nodoc": GOOD.replace('"""Two halves."""', "pass").format(api=1, name="nodoc"),
    "scribbles-clash": GOOD.format(api=1, name="kfold"),
    "scribbles-raises": "from scribbles.core import hookimpl\n@hookimpl\ndef scribbles_techniques():\n"
                        "    raise RuntimeError('boom')\n",
    "scribbles-badargs": "from scribbles.core import hookimpl\n@hookimpl\ndef scribbles_run_start(ctx, extra):\n"
                         "    pass\n",
    "scribbles-misspelt": "from scribbles.core import hookimpl\n@hookimpl\ndef scribbles_run_strat(ctx):\n"
                          "    pass\n",
    "scribbles-oldapi": GOOD.format(api=0, name="old_halves"),
    "scribbles-strapi": GOOD.format(api="'1'", name="str_halves"),
    "scribbles-classplugin": '''
        from scribbles.core import hookimpl
        class Plugin:
            @hookimpl
            def scribbles_run_start(self, ctx):
                pass
        import sys
        sys.modules[__name__] = Plugin  # the entry point now names a class, not an instance
    ''',
}

EXPECTED = {
    "scribbles-nodoc": "has no docstring",
    "scribbles-clash": "splitter 'kfold' is provided twice: by scribbles (built-in) and by scribbles-clash 1.2.0",
    "scribbles-raises": "scribbles_techniques() raised RuntimeError: boom",
    "scribbles-badargs": "extra",
    "scribbles-misspelt": "hook scribbles_run_strat matches no hook spec; did you mean scribbles_run_start?",
    "scribbles-oldapi": "needs scribbles plugin API 0, but scribbles",
    "scribbles-strapi": "SCRIBBLES_API_VERSION is '1'; it must be an int",
    "scribbles-classplugin": "is a class; register an instance or a module (did you forget the ()?)",
}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A temporary site folder on sys.path; its modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("scribbles_")]:
        if str(tmp_path) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]
    sys.modules.pop("scribbles_classplugin", None)


def test_each_broken_plugin_is_one_problem_and_the_rest_load(site: Path) -> None:
    """Eight kinds of broken plugin next to a good one: eight one-line problems, good and built-ins load."""
    for name, source in BROKEN.items():
        fake_dist(site, name, source)
    fake_dist(site, "scribbles-good", GOOD.format(api=HOOK_API_VERSION, name="halves"))
    registry = load_registry(autoload=True, strict=False)
    assert "halves" in registry.names("splitter")
    kfold = next(i for i in registry.techniques("splitter") if i.name == "kfold")
    assert kfold.provider == BUILTIN_PROVIDER
    assert len(registry.problems) == len(BROKEN), "\n".join(registry.problems)
    for name, fragment in EXPECTED.items():
        line = next((p for p in registry.problems if f"{name} 1.2.0" in p), None)
        assert line is not None and fragment in line and "\n" not in line, (name, line)
    # A plugin left out contributes nothing, and its hooks are not called.
    assert {"nodoc", "old_halves", "str_halves"}.isdisjoint(registry.names("splitter"))
    assert all(impl.plugin_name != "scribbles_misspelt" for impl in registry.hook.scribbles_run_start.get_hookimpls())


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_strict_mode_makes_each_broken_plugin_an_error(site: Path, name: str) -> None:
    """strict=True (the CLI's --strict, SCRIBBLES_STRICT_PLUGINS=1) raises on the first broken plugin."""
    fake_dist(site, name, BROKEN[name])
    with pytest.raises(PluginError) as err:
        load_registry(autoload=True, strict=True)
    assert EXPECTED[name] in str(err.value)


def test_api_version_of_a_plugin_passed_in_is_checked() -> None:
    """A plugin object that declares another API version is refused by name."""

    class Future:
        __name__ = "future-plugin"
        SCRIBBLES_API_VERSION = (HOOK_API_VERSION + 1, HOOK_API_VERSION + 2)

    with pytest.raises(PluginError, match=r"future-plugin needs scribbles plugin API 2 or 3"):
        load_registry(autoload=False, extra_plugins=[Future()])

    class Both:
        __name__ = "both"
        SCRIBBLES_API_VERSION = [HOOK_API_VERSION, HOOK_API_VERSION + 1]

        class Split(Splitter):
            """A splitter."""
            name = "both_split"
            class Params(BaseModel):
                pass
            def split(self, dataset):
                yield from ()

        @hookimpl
        def scribbles_techniques(self):
            return [self.Split]

    assert "both_split" in load_registry(autoload=False, extra_plugins=[Both()]).names("splitter")


def test_testing_kit_imports_no_orchestration_library() -> None:
    """scribbles.testing sits on scribbles.core: importing it pulls in no prefect, mlflow, dvc or flows."""
    code = (
        "import sys, scribbles.testing; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'dvc', 'sklearn'}); "
        "bad += [m for m in sys.modules if m.startswith('scribbles.flows')]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
