"""The built-in techniques, one module per family (core.registry.BUILTIN_PLUGINS lists them)."""
