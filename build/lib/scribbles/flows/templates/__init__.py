"""Templates of `scribbles new-plugin` (``a+b.tmpl`` is written to ``a/b``; PACKAGE is the module)."""
