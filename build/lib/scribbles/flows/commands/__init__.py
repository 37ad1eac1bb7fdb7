"""One module per CLI verb; each defines ``add_parser(verbs)``. ``COMMANDS`` lists them in help order."""

COMMANDS: tuple[str, ...] = (
    "run", "resume", "rerun", "split", "compare", "promote", "data", "plugins", "ui", "diagnose", "new_plugin", "join",
    "serve", "doctor", "store",
)
