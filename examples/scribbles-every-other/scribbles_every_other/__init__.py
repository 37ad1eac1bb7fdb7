"""An example scribbles plugin: the ``every_other`` splitter and the ``top_k_accuracy`` metric."""
