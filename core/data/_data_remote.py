"""The team's DVC remote, as DVC config overrides: shared by the ``dvc`` data source (a rerun on a clone
that never pulled reads its data version from the remote) and ``scribbles data push/pull``. Pure: it
reads one environment variable and imports nothing of DVC's.
"""

from __future__ import annotations

import os
from typing import Any

#: The team's DVC remote (scribbles.toml ``dvc.remote``): a URL or local folder, or a configured remote's name.
REMOTE_ENV = "SCRIBBLES_DVC_REMOTE"
#: The name a remote given by URL gets in DVC's config (only in memory: no DVC config file is written).
TEAM_REMOTE = "team"


def dvc_remote_config() -> dict[str, Any] | None:
    """DVC config overrides that make ``SCRIBBLES_DVC_REMOTE`` the default remote (None when it is unset).

    A URL or folder becomes a remote named ``team``; a bare name selects a remote in DVC's own config.
    Data missing from the local cache (another machine's data version, a fresh clone) then come from it.
    """
    remote = os.environ.get(REMOTE_ENV, "").strip()
    if not remote:
        return None
    if "://" in remote or "/" in remote or remote.startswith((".", "~")):
        return {"remote": {TEAM_REMOTE: {"url": remote}}, "core": {"remote": TEAM_REMOTE}}
    return {"core": {"remote": remote}}
