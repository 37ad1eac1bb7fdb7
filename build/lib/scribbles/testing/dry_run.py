"""The error a step of the conformance kit's dry run raises (its own module: kit.py and the family
checks both use it, and kit.py imports the family checks)."""

from __future__ import annotations


class DryRunError(Exception):
    """A step of a dry run failed; the message is one problem line."""
