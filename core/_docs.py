"""Docstring text shown to users (``scribbles plugins``), with nothing heavier than the standard library."""

from __future__ import annotations


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph (up to its first blank line), its lines joined by single spaces."""
    lines = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)
