"""An Optuna study storage checked before any work: a database URL whose dialect is installed, or a journal
file in a folder that exists or can be made. Imports nothing heavy (``scribbles doctor`` checks in seconds)."""

from __future__ import annotations

import os
from pathlib import Path

from scribbles.core.redact import mask_text

#: Where team mode (or a user) names the study storage for every sweep: an Optuna storage URL.
STUDY_ENV = "SCRIBBLES_STUDY_STORAGE"


def check_storage(url: str, field: str) -> None:
    """BadInput (exit 2, before any work) naming ``field`` unless ``url`` is a database URL whose SQLAlchemy
    dialect is installed, or a journal file whose folder exists or can be made."""
    from scribbles.core import BadInput

    if "://" in url and not url.startswith("file:"):
        import sqlalchemy
        from sqlalchemy.engine import make_url

        try:
            make_url(url).get_dialect()
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
            raise BadInput(f"{field}: {mask_text(url)} is not a database URL Optuna can open ({exc}); give "
                           "postgresql://USER@HOST/DB, sqlite:///PATH or a journal file path") from None
        return
    folder = Path(url.removeprefix("journal:").removeprefix("file://").removeprefix("file:")).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{field}: the journal file's folder {folder} cannot be made ({exc.strerror}); give a "
                       "path in a writable folder") from None
    if not os.access(folder, os.W_OK):
        raise BadInput(f"{field}: the journal file's folder {folder} is not writable; give another path")
