"""The shared secret that machines of one multi-node job prove they hold (see ``core.wire``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInput

TOKEN_ENV, TOKEN_FILE_ENV = "SCRIBBLES_JOB_TOKEN", "SCRIBBLES_JOB_TOKEN_FILE"
HOW = (f"set {TOKEN_ENV} to the same secret on every machine (or {TOKEN_FILE_ENV} to a file holding it), "
       f"e.g. `export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')`")
MIN_LENGTH = 16


def job_token(required_by: str) -> bytes:
    """The job token from the environment or its file; a BadInput saying how to set one when missing."""
    value = os.environ.get(TOKEN_ENV, "")
    path = os.environ.get(TOKEN_FILE_ENV, "")
    if not value and path:
        try:
            value = Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise BadInput(f"{TOKEN_FILE_ENV}={path}: cannot read the job token ({exc.strerror}); {HOW}") from None
    if not value:
        raise BadInput(f"{required_by} needs a shared job token: {HOW}")
    if len(value) < MIN_LENGTH:
        raise BadInput(f"{required_by}: the job token is {len(value)} characters; use at least {MIN_LENGTH} "
                       f"(a random one: python -c 'import secrets; print(secrets.token_hex(32))')")
    return value.encode()
