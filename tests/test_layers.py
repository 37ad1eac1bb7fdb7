"""Layering: core and the registry load where only torch is installed."""

from __future__ import annotations

import subprocess
import sys


def test_core_and_registry_import_no_orchestration_libraries() -> None:
    """Importing scribbles.core and loading every built-in plugin imports no prefect, mlflow or dvc."""
    code = (
        "import sys, scribbles.core as c; c.load_registry(autoload=False); "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'dvc', 'sklearn'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
