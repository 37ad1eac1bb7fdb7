"""scribbles.flows: Prefect flows and the command line. They call the registry; they hold no technique."""
