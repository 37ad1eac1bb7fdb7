"""`scribbles new-plugin NAME [--path DIR]`: a plugin package with one technique, its tests and a README."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from scribbles.core import BadInput

from .common import EXIT_OK

#: A distribution name pip accepts (PEP 508), e.g. scribbles-every-other.
DIST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


#: Far below the 255 bytes a file name may have; the name becomes a folder, a module and a class name.
MAX_NAME = 100


def names_for(dist: str) -> dict[str, str]:
    """The import package, technique name and class name derived from a distribution name."""
    if len(dist) > MAX_NAME:
        raise BadInput(f"new-plugin: the name is {len(dist)} characters long; use at most {MAX_NAME} "
                       "(it names a folder, a module and a class), e.g. scribbles-every-other")
    if not DIST_NAME.match(dist):
        raise BadInput(
            f"new-plugin: {dist[:60]!r} is not a valid package name; use letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit, e.g. scribbles-every-other"
        )
    package = re.sub(r"[-_.]+", "_", dist).lower()
    if not package[0].isalpha():
        raise BadInput(f"new-plugin: {dist!r} must start with a letter (it becomes the module {package})")
    technique = package.removeprefix("scribbles_") or package
    klass = "".join(part.capitalize() for part in technique.split("_") if part)
    return {"dist": dist, "package": package, "technique": technique, "klass": klass}


def render(names: dict[str, str]) -> dict[str, str]:
    """Relative path -> text of every file of the skeleton."""
    from importlib.resources import files

    from scribbles.core import HOOK_API_VERSION

    values = {**names, "api": str(HOOK_API_VERSION)}
    out = {}
    for template in sorted(files("scribbles.flows.templates").iterdir(), key=lambda t: t.name):
        if not template.name.endswith(".tmpl"):
            continue
        relative = template.name.removesuffix(".tmpl").replace("+", "/").replace("PACKAGE", names["package"])
        text = template.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        out[relative] = text
    return out


def cmd_new_plugin(args: argparse.Namespace) -> int:
    """Write the skeleton into DIR/NAME and say how to install and test it."""
    names = names_for(args.name)
    parent = Path(args.path)
    if parent.exists() and not parent.is_dir():
        raise BadInput(f"--path: {parent} is a file; pass the folder to create {args.name} in")
    root = parent / args.name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BadInput(f"new-plugin: {root} already exists and is not empty; choose another NAME or --path")
    for relative, text in render(names).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    print(f"created {root}: splitter '{names['technique']}' in {names['package']}/techniques.py")
    print(f"next: pip install -e {root} && pytest {root / 'tests'} && scribbles plugins --family splitter")
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles new-plugin`."""
    new = verbs.add_parser("new-plugin", help="a plugin package skeleton with its tests")
    new.add_argument("name", help="the distribution name, e.g. scribbles-every-other")
    new.add_argument("--path", default=".", help="the folder to create it in (default: here)")
    new.set_defaults(func=cmd_new_plugin)
