"""The built-in techniques, one module per family (core.registry.BUILTIN_TECHNIQUES lists them and their techniques)."""
