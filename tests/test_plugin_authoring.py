"""Plugin authoring end to end: an installed third-party package, broken plugins, `plugins check`, `new-plugin`.

The example plugin under examples/ and the `new-plugin` scaffold are installed with pip into
temporary target folders that subprocesses see through PYTHONPATH (and this process through
sys.path), so the dev venv never changes. A few checks run the real `scribbles` binary; the rest call
the CLI's entry point in this process, because each fresh process spends seconds importing torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import SCRIBBLES, fake_dist, run_cli
from scribbles.flows.cli import run_cli as cli_main
from scribbles.testing import synthetic_frame

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "scribbles-every-other"


def pip_install(source: Path, target: Path, workdir: Path) -> None:
    """``pip install`` a copy of ``source`` into ``target`` (no network: no deps, no build isolation)."""
    copy = workdir / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(copy)], check=True, capture_output=True)


def plugin_env(*sites: Path, autoload: bool = True, **extra: str) -> dict[str, str]:
    """Environment for a subprocess that sees ``sites`` and loads entry points unless told not to."""
    return {"PYTHONPATH": os.pathsep.join(map(str, sites)),
            "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0" if autoload else "1", **extra}


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed into a temporary target folder."""
    root = tmp_path_factory.mktemp("example")
    pip_install(EXAMPLE, root / "site", root)
    return root / "site"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three broken plugins: one fails to import, one misspells a hook, one needs another plugin API."""
    site = tmp_path_factory.mktemp("broken")
    fake_dist(site, "scribbles-broken", "import not_a_module_anywhere\n")
    fake_dist(site, "scribbles-misspelt", """
        from scribbles.core import hookimpl

        @hookimpl
        def scribbles_fold_strat(ctx):
            pass
    """)
    fake_dist(site, "scribbles-future", "SCRIBBLES_API_VERSION = 99\n", version="3.0.0")
    fake_dist(site, "scribbles-leaky", LEAKY)
    return site


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make ``sites`` importable in this process and the default registry rediscover plugins."""
    added: list[str] = []
    # `--strict` sets SCRIBBLES_STRICT_PLUGINS in os.environ (so a run's worker processes see it too);
    # setting it here first makes monkeypatch remove it again after the test.
    monkeypatch.setenv("SCRIBBLES_STRICT_PLUGINS", "0")

    def see(*sites: Path, **env: str) -> None:
        for site in sites:
            monkeypatch.syspath_prepend(str(site))
            added.append(str(site))
        monkeypatch.setenv("SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD", "0")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr("scribbles.core.registry._DEFAULT", None)

    yield see
    for name in [m for m, mod in sys.modules.items() if any(str(getattr(mod, "__file__", "")).startswith(a)
                                                            for a in added)]:
        del sys.modules[name]


def call(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI's entry point in this process: exit code, stdout, stderr."""
    capfd.readouterr()
    try:
        code = cli_main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capfd.readouterr()
    return code, out, err


LEAKY = '''
    import numpy as np
    from pydantic import BaseModel
    from scribbles.core import Fold, Splitter, hookimpl

    SCRIBBLES_API_VERSION = 1

    class LeakyGroups(Splitter):
        """Claims to keep groups apart but deals rows in turn, so every group lands on both sides."""
        name = "leaky_groups"
        guards = frozenset({"group"})

        class Params(BaseModel):
            n_splits: int = 2

        def split(self, dataset):
            rows = np.arange(len(dataset))
            for index in range(self.params.n_splits):
                yield Fold(index, rows[rows % 2 != index], rows[rows % 2 == index])

    @hookimpl
    def scribbles_techniques():
        return [LeakyGroups]
'''


def listed(stdout: str) -> dict[tuple[str, str], str]:
    """(family, name) -> provider from `scribbles plugins --json`."""
    return {(r["family"], r["name"]): r["provider"] for r in json.loads(stdout)}


def test_installed_plugins_listed_with_provider_and_broken_ones_named_in_one_line(
    example_site: Path, broken_site: Path, tmp_path: Path
) -> None:
    """The real binary: the example's techniques with distribution and version, the built-ins, and one
    warning line per broken plugin (import error, misspelt hook, plugin API mismatch)."""
    result = run_cli("plugins", "--json", cwd=tmp_path, env=plugin_env(broken_site, example_site))
    assert result.returncode == 0, result.stderr
    shown = listed(result.stdout)
    assert shown[("splitter", "every_other")] == "scribbles-every-other 0.2.0"
    assert shown[("metric", "top_k_accuracy")] == "scribbles-every-other 0.2.0"
    assert shown[("splitter", "kfold")] == "scribbles (built-in)"
    assert ("splitter", "leaky_groups") in shown  # registers fine: only its dry run shows the leak
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 3, result.stderr
    broken = next(w for w in warnings if "scribbles-broken 0.1.0" in w)
    assert "could not be loaded: ModuleNotFoundError: No module named 'not_a_module_anywhere'" in broken
    misspelt = next(w for w in warnings if "scribbles-misspelt 0.1.0" in w)
    assert "hook scribbles_fold_strat matches no hook spec; did you mean scribbles_fold_start?" in misspelt
    future = next(w for w in warnings if "scribbles-future 3.0.0" in w)
    assert "needs scribbles plugin API 99" in future and "provides API 1" in future


def test_autoload_off_and_deny_list_hide_an_installed_plugin(
    example_site: Path, tmp_path: Path, in_process: Any, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD=1 and `plugins: {deny: [...]}` keep the entry points out."""
    in_process(example_site)
    code, out, _ = call(["plugins", "--json"], capfd)
    assert code == 0 and ("splitter", "every_other") in listed(out)

    (tmp_path / "deny.yaml").write_text("data: {name: file, path: x.csv, target: y}\nsplit: {name: kfold}\n"
                                        "plugins: {deny: [scribbles_every_other]}\n")
    code, out, _ = call(["plugins", "--json", "--config", str(tmp_path / "deny.yaml")], capfd)
    assert code == 0
    assert ("splitter", "every_other") not in listed(out) and ("splitter", "kfold") in listed(out)
    # A config that uses a denied plugin's technique is told the deny list may be why it is unknown.
    (tmp_path / "uses.yaml").write_text("data: {name: file, path: x.csv, target: y}\nsplit: {name: every_other}\n"
                                        "plugins: {deny: [scribbles-every-other]}\n")
    code, _, err = call(["run", str(tmp_path / "uses.yaml")], capfd)
    assert code == 2 and "unknown splitter 'every_other'" in err, err
    assert "plugins.deny leaves out scribbles-every-other, which may provide it" in err, err
    # A typo in the deny list kept nothing out, silently: now a warning names it and what is installed.
    (tmp_path / "typo.yaml").write_text("data: {name: file, path: x.csv, target: y}\nsplit: {name: kfold}\n"
                                        "plugins: {deny: [scribbles-every-othr]}\n")
    code, out, err = call(["plugins", "--json", "--config", str(tmp_path / "typo.yaml")], capfd)
    assert code == 0 and ("splitter", "every_other") in listed(out)
    assert "plugins.deny: no installed plugin distribution is called 'scribbles-every-othr'; did you mean " \
           "scribbles-every-other?" in err, err

    in_process(SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD="1")
    code, out, _ = call(["plugins", "--json"], capfd)
    assert code == 0
    assert ("splitter", "every_other") not in listed(out) and ("splitter", "kfold") in listed(out)


@pytest.mark.parametrize("how", ["--strict", "SCRIBBLES_STRICT_PLUGINS=1"])
def test_strict_makes_a_broken_plugin_an_error(how: str, broken_site: Path, in_process: Any,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    """In strict mode the first broken plugin is exit 2 with one line naming it."""
    in_process(broken_site, **({"SCRIBBLES_STRICT_PLUGINS": "1"} if how.startswith("SCRIBBLES") else {}))
    code, out, err = call(["plugins", *(["--strict"] if how == "--strict" else [])], capfd)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: plugin scribbles-"), err


def test_plugins_check_fails_on_a_misspelt_hook_and_a_leak_and_passes_on_a_good_plugin(
    broken_site: Path, example_site: Path, tmp_path: Path, in_process: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """The real binary: exit 1 with every problem listed; in process: exit 0 with only the good plugin."""
    bad = run_cli("plugins", "check", "--family", "splitter", cwd=tmp_path, env=plugin_env(broken_site, example_site))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "5 problems:" in bad.stdout  # three plugins that fail to load, two leaking folds
    assert "hook scribbles_fold_strat matches no hook spec" in bad.stdout
    assert "splitter 'leaky_groups' (scribbles-leaky 0.1.0): leakage guard: splitter 'leaky_groups', fold 0:" \
        in bad.stdout
    assert "ok    splitter  every_other" in bad.stdout and "FAIL  splitter  leaky_groups" in bad.stdout

    in_process(example_site)
    code, out, err = call(["plugins", "check", "--family", "metric", "--json"], capfd)
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] and report["problems"] == [] and report["notes"] == []
    assert {(t["name"], t["ok"]) for t in report["techniques"]} >= {("top_k_accuracy", True), ("accuracy", True)}


def test_a_leaky_plugin_splitter_stops_a_run_before_any_work(
    broken_site: Path, tmp_path: Path, in_process: Any, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with the leaky splitter fails (exit 1) on the guard's message; no MLflow run, no traceback."""
    in_process(broken_site)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    synthetic_frame().to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "leaky.yaml").write_text(
        "data: {name: file, path: rows.csv, target: y, group: g, time: t}\nsplit: {name: leaky_groups}\n"
    )
    code, out, err = call(["run", "leaky.yaml"], capfd)
    assert code == 1, out + err
    assert "failed: splitter 'leaky_groups', fold 0: 8 groups of 'g' on both sides" in err
    assert "Traceback" not in out + err
    assert not (tmp_path / "mlflow.db").exists()


RAISER = '''
    from pydantic import BaseModel
    from scribbles.core import Splitter, hookimpl

    class Raiser(Splitter):
        """Raises when asked for folds."""
        name = "raiser"

        class Params(BaseModel):
            n_splits: int = 2

        def split(self, dataset):
            raise RuntimeError("boom in split")

    @hookimpl
    def scribbles_techniques():
        return [Raiser]
'''

TRACKER = '''
    from scribbles.core import Tracker, hookimpl

    class Notes(Tracker):
        """Keeps notes."""
        name = "notes"

        @hookimpl
        def scribbles_fold_ended(self, ctx):
            pass

    @hookimpl
    def scribbles_techniques():
        return {RETURN}
'''


def test_a_plugin_that_raises_mid_command_is_named_as_the_culprit(
    tmp_path: Path, in_process: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in a plugin's own code: one line naming the distribution and the line, with how to
    leave it out (not a traceback and "please report it", which blamed scribbles); the traceback is kept
    for the plugin's authors; no store made."""
    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-raiser", RAISER)
    in_process(site)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    synthetic_frame().to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "raise.yaml").write_text("data: {name: file, path: rows.csv, target: y}\nsplit: {name: raiser}\n")
    code, out, err = call(["run", "raise.yaml"], capfd)
    assert code == 1, out + err
    last = err.strip().splitlines()[-1]
    assert err.strip().splitlines() == [last] and "Traceback" not in err, err  # one line
    assert last.startswith("failed: plugin scribbles-raiser raised RuntimeError: boom in split "
                           "(scribbles_raiser.py:"), last
    assert "in split; traceback in .scribbles/plugin-error.log)" in last, last
    assert "plugins: {deny: [scribbles-raiser]}" in last and "please report it" not in err
    kept = (tmp_path / ".scribbles" / "plugin-error.log").read_text()
    assert kept.startswith("Traceback") and 'raise RuntimeError("boom in split")' in kept
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(("returned", "expected"), [
    ("[Notes]", "Notes: hook scribbles_fold_ended matches no hook spec; did you mean scribbles_fold_end?"),
    ("None", "scribbles_techniques() returned None (no return statement?); return a list of technique classes"),
    ("Notes", "scribbles_techniques() returned the class Notes itself; return a list"),
    ("{'notes': Notes}", "scribbles_techniques() returned a dict; return a list"),
    ("['notes']", "got the string 'notes'; return the class, not its name"),
])
def test_a_tracker_plugin_whose_hooks_would_never_run_is_refused_when_it_loads(
    returned: str, expected: str, tmp_path: Path, in_process: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """A misspelt hook method on a tracker (pluggy would register it and never call it) and a
    ``scribbles_techniques()`` that does not return a list are one problem line naming the plugin."""
    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-notes", TRACKER.replace("{RETURN}", returned))
    in_process(site, SCRIBBLES_STRICT_PLUGINS="1")
    code, out, err = call(["plugins"], capfd)
    assert code == 2, out + err
    assert err.startswith("error: plugin scribbles-notes 0.1.0: ") and expected in err, err
    assert "Traceback" not in err


def test_installed_plugin_is_used_by_a_run(example_site: Path, tmp_path: Path, prefect_api: str,
                                           in_process: Any, capfd: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The real binary splits with the plugin's splitter and scores with its metric; MLflow records the plugin."""
    project = tmp_path / "proj"
    project.mkdir()
    synthetic_frame(rows=96).to_csv(project / "rows.csv", index=False)
    (project / "plugged.yaml").write_text(
        "data: {name: file, path: rows.csv, target: y, group: g, time: t}\n"
        "split: {name: every_other, offset: 1}\n"
        "model: {name: mlp, hidden: [8]}\n"
        "train: {epochs: 2, batch_size: 16}\n"
        "evaluate: {metrics: [accuracy, {name: top_k_accuracy, k: 2}]}\n"
    )
    args = ["run", "plugged.yaml"]
    result = run_cli(*args, cwd=project, env=plugin_env(example_site, PREFECT_API_URL=prefect_api))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "top_k_accuracy" in result.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("plugged").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["scribbles.splitter"] == "every_other"
    assert json.loads(parent.data.tags["scribbles.plugins"])["scribbles-every-other"] == "0.2.0"
    # Three classes: the right class among the two most likely is at least as frequent as it being the most
    # likely, and every fold run's scores average to the parent's.
    assert parent.data.metrics["top_k_accuracy_mean"] >= parent.data.metrics["accuracy_mean"]
    folds = [r.data.metrics["top_k_accuracy"] for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(folds) == 2 and parent.data.metrics["top_k_accuracy_mean"] == pytest.approx(sum(folds) / 2)

    in_process(example_site)
    monkeypatch.chdir(project)
    code, _, err = call([*args, "--set", "plugins.deny=[scribbles-every-other]"], capfd)
    assert code == 2 and "split: unknown splitter 'every_other'" in err, err


def test_new_plugin_scaffold_installs_and_its_tests_pass(
    tmp_path: Path, in_process: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`new-plugin` writes a package that pip installs, that scribbles discovers and whose tests pass
    (run in one pytest process with the example plugin's own tests)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = call(["new-plugin", "scribbles-round-robin", "--path", "plugins"], capfd)
    assert code == 0, err
    root = tmp_path / "plugins" / "scribbles-round-robin"
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "scribbles_round_robin/__init__.py", "scribbles_round_robin/techniques.py",
        "tests/test_techniques.py",
    }
    site = tmp_path / "site"
    pip_install(root, site, tmp_path / "build")
    pip_install(EXAMPLE, site, tmp_path / "build")
    env = {**os.environ, **plugin_env(site)}
    # The installed copies, not the source folders, are what the tests import: pytest runs from elsewhere.
    tests = subprocess.run([str(Path(SCRIBBLES).with_name("pytest")), "-q", "-p", "no:cacheprovider",
                            str(root / "tests"), str(EXAMPLE / "tests")],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "10 passed" in tests.stdout

    in_process(site)
    code, out, _ = call(["plugins", "--json", "--family", "splitter"], capfd)
    assert code == 0 and listed(out)[("splitter", "round_robin")] == "scribbles-round-robin 0.1.0"
    code, _, err = call(["new-plugin", "scribbles-round-robin", "--path", "plugins"], capfd)
    assert code == 2 and "already exists" in err


CENTROID = '''
    import numpy as np
    from pydantic import BaseModel
    from sklearn.base import BaseEstimator, ClassifierMixin
    from scribbles.core import Model, hookimpl

    class NearestCentroid(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            self.classes_ = np.unique(y)
            self.centroids_ = np.stack([x[y == c].mean(0) for c in self.classes_])
            return self

    class Centroid(Model):
        """A classic model of a plugin's own."""
        name = "centroid"
        default_strategy = "sklearn"

        class Params(BaseModel):
            pass

        def build(self, spec):
            return NearestCentroid()

    @hookimpl
    def scribbles_techniques():
        return [Centroid]
'''


def test_a_plugin_classic_model_read_back_from_its_fold_task_is_trusted(
    tmp_path: Path, in_process: Any
) -> None:
    """A fitted estimator crosses from the fold task as a skops file, loaded with only trusted types:
    scikit-learn's, scribbles' models and (new) every installed model technique's module; it refused a
    plugin's own estimator class, so a third-party classic model's fold model was never kept."""
    import numpy as np
    import skops.io
    from scribbles.core import load_registry
    from scribbles.flows.fold_outputs import _estimator, model_modules

    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-centroid", CENTROID)
    in_process(site)
    registry = load_registry()
    assert "scribbles_centroid." in model_modules(registry)
    import scribbles_centroid

    x, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    path = tmp_path / "fold.skops"
    path.write_bytes(skops.io.dumps(scribbles_centroid.NearestCentroid().fit(x, y)))
    with pytest.raises(ValueError, match=r"holds types outside .*scribbles_centroid\.NearestCentroid"):
        _estimator(path)
    loaded = _estimator(path, model_modules(registry))
    assert np.allclose(loaded.centroids_, scribbles_centroid.NearestCentroid().fit(x, y).centroids_)


MEDDLER = '''
    from scribbles.core import Tracker, hookimpl

    class Meddler(Tracker):
        """Changes what a fold reports."""
        name = "meddler"

        @hookimpl
        def scribbles_fold_end(self, ctx):
            ctx.metrics = {**ctx.metrics, "accuracy": 0.999}

    @hookimpl
    def scribbles_techniques():
        return [Meddler]
'''


def test_a_tracker_that_changes_what_a_fold_reports_fails_the_run_in_one_line(
    tmp_path: Path, prefect_api: str
) -> None:
    """A tracker that assigned ctx.metrics made the MLflow fold runs record accuracy 0.999 (exit 0). Now the
    change is refused: the run fails, one `failed:` line names the plugin (Prefect's own traceback of the
    error is not printed), and no MLflow run is left RUNNING or records the changed value."""
    import sqlite3

    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-meddler", MEDDLER)
    synthetic_frame(rows=48).to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "meddle.yaml").write_text(
        "data: {name: file, path: rows.csv, target: y, group: g, time: t}\nsplit: {name: kfold, n_splits: 2}\n"
        "model: {name: mlp, hidden: [4]}\ntrain: {epochs: 1, batch_size: 16}\ntracking: [mlflow, meddler]\n")
    result = run_cli("run", "meddle.yaml", cwd=tmp_path, env=plugin_env(site, PREFECT_API_URL=prefect_api))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("failed: plugin scribbles-meddler raised TypeError: FoldEndContext.metrics is "
                               "read-only"), lines[0]
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM metrics WHERE value = 0.999").fetchone() == (0,)
