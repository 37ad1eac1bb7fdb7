"""Layering: the import graph keeps core <- plugins <- flows, and the hook specs keep their signatures.

The graph is read from the source with ``ast`` (every ``import`` statement, function-level ones
included, less those under ``if TYPE_CHECKING:``), not by importing or grepping.
"""

from __future__ import annotations

import ast
import functools
import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scribbles.core import hookspecs
from scribbles.core.markers import PROJECT

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "scribbles.core", "plugins": "scribbles.plugins", "flows": "scribbles.flows",
            "testing": "scribbles.testing"}
ORCHESTRATION = ("prefect", "prefect_dask", "mlflow", "dvc")

#: flows -> plugins imports that point 2 of issue 18 (the run store beside its tracker) removes; the
#: test fails on any other, and this set must only shrink.
#: Flows import no plugin module: the run store reaches them through ``Tracker.store()`` (issue 18).
KNOWN_FLOW_TO_PLUGIN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    folder, *rest = path.relative_to(REPO).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, modules: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every module ``module`` imports (``from a import b`` yields ``a.b`` and ``a``: b may be either; only
    ``a.b`` where every such ``b`` is one of ``modules``, a package's submodule, not a name it serves)."""
    package = module if is_package else module.rpartition(".")[0]
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
            if not all(name in modules for name in names):
                yield base
            yield from names
        stack.extend(ast.iter_child_nodes(node))


def _lazy_exports(tree: ast.Module, package: str) -> Iterator[str]:
    """The private modules a core sub-package re-exports on first use (its ``_EXPORTS`` and ``_NAMESPACES``
    dicts, PEP 562): edges the import statements do not show, so a circle through a sub-package is seen."""
    for node in tree.body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id in ("_EXPORTS", "_NAMESPACES") and isinstance(node.value, ast.Dict)):
            yield from (f"{package}.{v.value}" for v in node.value.values if isinstance(v, ast.Constant))


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, for every module of core, plugins, flows and testing."""
    graph: dict[str, set[str]] = {}
    paths = [path for folder in PACKAGES for path in sorted((REPO / folder).rglob("*.py"))]
    modules = frozenset(_module_name(path) for path in paths)
    for path in paths:
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = set(_imports(tree, module, path.name == "__init__.py", modules))
        if path.name == "__init__.py" and module.startswith("scribbles.core."):
            graph[module] |= set(_lazy_exports(tree, module))
    return graph


GRAPH = import_graph()


def _edges(source_prefix: str) -> Iterator[tuple[str, str]]:
    for module, targets in GRAPH.items():
        if module == source_prefix or module.startswith(source_prefix + "."):
            for target in targets:
                yield module, target


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read() -> None:
    """The reader sees what it must: a relative import, a function-level one, a TYPE_CHECKING one skipped."""
    assert "scribbles.core.training._torch_strategy" in GRAPH["scribbles.core.training._loop"]  # from ._torch...
    assert "scribbles.core.training._loop" in GRAPH["scribbles.core.training._distributed"]  # inside run_job
    assert "scribbles.core.training._loop" in GRAPH["scribbles.core.training"]  # _EXPORTS, read lazily
    assert "torch" not in GRAPH["scribbles.core.contracts"]  # only under TYPE_CHECKING there
    assert "scribbles.plugins.strategies.ddp" in GRAPH["scribbles.plugins.strategies.zero"]
    assert len(GRAPH) > 100


def test_core_imports_no_plugin_flow_or_orchestration_library() -> None:
    bad = sorted((m, t) for m, t in _edges("scribbles.core")
                 if _under(t, "scribbles.plugins", "scribbles.flows", "scribbles.testing", *ORCHESTRATION))
    assert bad == []


def test_plugins_import_no_flow() -> None:
    bad = sorted((m, t) for m, t in _edges("scribbles.plugins") if _under(t, "scribbles.flows", "prefect"))
    assert bad == []


def test_flows_import_no_plugin_beyond_the_known_ones() -> None:
    found = {(m, ".".join(t.split(".")[:3])) for m, t in _edges("scribbles.flows") if _under(t, "scribbles.plugins")}
    assert found <= KNOWN_FLOW_TO_PLUGIN, sorted(found - KNOWN_FLOW_TO_PLUGIN)


def test_flows_read_runs_through_the_run_store_not_mlflow() -> None:
    """The run store lives with its tracker: no flow imports mlflow, even inside a function."""
    bad = sorted((m, t) for m, t in _edges("scribbles.flows") if _under(t, "mlflow"))
    assert bad == []


#: The public face of core: these modules, the package itself and the sub-packages' ``__init__``.
CORE_SUBPACKAGES = ("scribbles.core.training", "scribbles.core.data", "scribbles.core.evaluation")


def _private_core(target: str) -> bool:
    """A ``_``-prefixed module inside scribbles.core (``scribbles.core.training._loop``, ``scribbles.core._lazy``)."""
    return (target in GRAPH and _under(target, "scribbles.core")
            and any(part.startswith("_") for part in target.split(".")[2:]))


def _outside_core_files() -> Iterator[tuple[Path, str | None]]:
    """Every Python file outside core that may import it, with its module name where it has one."""
    for folder in ("plugins", "flows", "testing"):
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path, _module_name(path)
    for folder in ("tests", "bench", "examples"):
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path, None


@functools.cache
def _outside_core_imports() -> dict[str, set[str]]:
    """File -> what it imports, for every file outside core (relative imports resolved where it has a module)."""
    found = {}
    for path, module in _outside_core_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found[str(path.relative_to(REPO))] = set(_imports(tree, module or "", path.name == "__init__.py"))
    return found


def test_nothing_outside_core_imports_a_private_core_module() -> None:
    """plugins, flows, testing, tests, bench and examples import only ``scribbles.core``, its public-face modules
    and its sub-packages (``scribbles.core.training``, ``.data``, ``.evaluation``), never ``_loop`` and the like."""
    bad = [(path, target) for path, targets in _outside_core_imports().items()
           for target in targets if _private_core(target)]
    assert sorted(bad) == []


def test_every_name_imported_from_a_core_subpackage_is_exported() -> None:
    """``from scribbles.core.training import X`` anywhere (function-level imports included) names an export of
    the sub-package, so a lazy import cannot fail at run time on a name the package does not serve."""
    import importlib

    exported = {name: {*module._EXPORTS, *module._NAMESPACES}
                for name, module in ((n, importlib.import_module(n)) for n in CORE_SUBPACKAGES)}
    everything = [*GRAPH.values(), *_outside_core_imports().values()]
    bad = sorted({target for targets in everything for target in targets
                  if target.rpartition(".")[0] in exported and not target.rpartition(".")[2].startswith("_")
                  and target.rpartition(".")[2] not in exported[target.rpartition(".")[0]]})
    assert bad == []


def test_the_private_check_finds_one() -> None:
    assert _private_core("scribbles.core.training._loop") and _private_core("scribbles.core._lazy")
    assert not _private_core("scribbles.core.training.train_single") and not _private_core("scribbles.core.config")
    assert not _private_core("scribbles.core._nothing")  # not a module


def _defined(path: Path) -> set[str]:
    """The names a module binds at its top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", CORE_SUBPACKAGES)
def test_core_subpackages_reexport_what_they_list(package: str) -> None:
    """A sub-package's ``__all__`` is exactly what its lazy exports serve, each name is defined in the private
    module it points to (read with ``ast``: no torch imported), and the package says what it is."""
    import importlib

    module = importlib.import_module(package)
    folder = REPO / "core" / package.split(".")[2]
    assert module.__doc__ and sorted(module.__all__) == sorted({*module._EXPORTS, *module._NAMESPACES})
    missing = [(name, source) for name, source in module._EXPORTS.items()
               if name not in _defined(folder / f"{source}.py")]
    assert missing == [] and all((folder / f"{source}.py").is_file() for source in module._NAMESPACES.values())


def _family_of(module: str) -> str | None:
    """The family folder or module of a plugin module: models and image_models are both 'model'."""
    if not _under(module, "scribbles.plugins") or module == "scribbles.plugins":
        return None
    top = module.split(".")[2]
    return "models" if top == "image_models" else top


def test_no_plugin_imports_another_familys_module() -> None:
    bad = []
    for module, target in _edges("scribbles.plugins"):
        mine, theirs = _family_of(module), _family_of(target)
        if theirs is not None and mine is not None and theirs != mine and target in GRAPH:
            bad.append((module, target))
    assert sorted(bad) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    """No module reaches itself through imports; a package's ``__init__`` re-exporting its modules is
    not a circle unless one of them imports the package back."""
    graph = {m: {t for t in targets if t != m} for m, targets in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_circle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: Every hook spec: its signature and pluggy options. A change here is a change of the plugin API:
#: bump HOOK_API_VERSION (core/markers.py) and say so in the release notes.
HOOK_SPECS = {
    "scribbles_techniques": ("() -> 'Iterable[type[Technique]]'", {}),
    "scribbles_run_start": ("(ctx: 'RunContext') -> 'None'", {}),
    "scribbles_fold_start": ("(ctx: 'FoldContext') -> 'None'", {}),
    "scribbles_epoch_end": ("(ctx: 'EpochContext') -> 'None'", {}),
    "scribbles_fold_end": ("(ctx: 'FoldEndContext') -> 'None'", {}),
    "scribbles_run_end": ("(ctx: 'RunEndContext') -> 'None'", {}),
    "scribbles_run_error": ("(ctx: 'RunErrorContext') -> 'None'", {}),
}


def _specs() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, f"{PROJECT}_spec")}


def test_every_hook_spec_is_pinned() -> None:
    assert sorted(_specs()) == sorted(HOOK_SPECS)


@pytest.mark.parametrize("name", sorted(HOOK_SPECS))
def test_hook_spec_signature(name: str) -> None:
    spec = _specs()[name]
    signature, options = HOOK_SPECS[name]
    assert str(inspect.signature(spec)) == signature
    marks = getattr(spec, f"{PROJECT}_spec")
    set_options = {k: v for k, v in marks.items() if v not in (False, None)}
    assert set_options == options


def test_core_and_registry_import_no_orchestration_libraries() -> None:
    """Importing scribbles.core and loading every built-in plugin imports no prefect, mlflow or dvc."""
    code = (
        "import sys, scribbles.core as c; r = c.load_registry(autoload=False); r.import_all(); "
        "assert len(r.get_plugins()) >= 13, r.get_plugins(); "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'dvc', 'sklearn'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_listing_plugins_imports_no_heavy_library() -> None:
    """`scribbles plugins` lists every technique without importing torch, pandas, numpy or the
    orchestration libraries (what made it take 2 s and more)."""
    code = (
        "import sys, io, contextlib\n"
        "from scribbles.flows.cli import run_cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    code = run_cli(['plugins', '--json'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'pandas', 'numpy', 'sklearn', 'prefect', 'mlflow', 'dvc', 'matplotlib'})\n"
        "sys.__stderr__.write(f'{code} {len(out.getvalue())} {heavy}')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    exit_code, size, heavy = done.stderr.strip().splitlines()[-1].split(" ", 2)
    assert (exit_code, heavy) == ("0", "[]") and int(size) > 5000, done.stderr


def test_every_package_folder_is_in_the_wheel() -> None:
    """pyproject lists packages by hand (the folders map onto scribbles.*): a sub-package missing from the list
    works in an editable install and is absent from a wheel (plugins/strategies was)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(init).removesuffix(".__init__") for folder in PACKAGES
             for init in (REPO / folder).rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
