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
    "scribbles-exits": "import sys\nsys.exit(3)\n",
    "scribbles-argparse": "import argparse\nargparse.ArgumentParser(prog='theirs').parse_args(['--their-flag'])\n",
    "scribbles-halts": "class Halt(BaseException):\n    pass\nraise Halt('stop everything')\n",
    "scribbles-exithook": "import sys\nfrom scribbles.core import hookimpl\n@hookimpl\ndef scribbles_techniques():\n"
                          "    sys.exit('bye')\n",
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
    "scribbles-exits": "(entry point 'scribbles_exits = scribbles_exits') could not be loaded: SystemExit: 3 (the "
                       "module exits when imported",
    "scribbles-argparse": "could not be loaded: SystemExit: 2 (the module exits when imported",
    "scribbles-halts": "could not be loaded: Halt: stop everything",
    "scribbles-exithook": "scribbles_techniques() raised SystemExit: bye",
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


def test_each_broken_plugin_is_one_problem_and_the_rest_load(site: Path, capfd: pytest.CaptureFixture) -> None:
    """Twelve kinds of broken plugin (sys.exit, argparse and other BaseExceptions at import among them) next
    to a good one: twelve one-line problems, nothing else printed, good and built-ins load."""
    for name, source in BROKEN.items():
        fake_dist(site, name, source)
    fake_dist(site, "scribbles-good", GOOD.format(api=HOOK_API_VERSION, name="halves"))
    registry = load_registry(autoload=True, strict=False)
    assert "halves" in registry.names("splitter")
    kfold = next(i for i in registry.techniques("splitter") if i.name == "kfold")
    assert kfold.provider == BUILTIN_PROVIDER
    assert len(registry.problems) == len(BROKEN), "\n".join(registry.problems)
    assert "theirs" not in "".join(capfd.readouterr())  # the plugin's own usage message is held back
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


def test_a_plugin_that_exits_at_import_does_not_take_the_command_down(tmp_path: Path) -> None:
    """`scribbles plugins` with a plugin calling argparse's parse_args() at import: the command works and
    prints one warning naming the distribution and entry point (no usage of the plugin's own); with
    --strict it is one error line, exit 2."""
    from helpers import run_cli

    fake_dist(tmp_path, "scribbles-argparse", BROKEN["scribbles-argparse"])
    env = {"PYTHONPATH": str(tmp_path), "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0"}
    done = run_cli("plugins", cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: plugin scribbles-argparse 1.2.0 (entry point "
                                                         "'scribbles_argparse = scribbles_argparse')"), warnings
    assert "theirs" not in done.stdout + done.stderr and "kfold" in done.stdout
    strict = run_cli("--strict", "plugins", cwd=tmp_path, env=env, timeout=120)
    lines = [line for line in strict.stderr.splitlines() if line.strip()]
    assert strict.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: plugin scribbles-argparse")
