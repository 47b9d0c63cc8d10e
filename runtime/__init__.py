"""Run plumbing, apart from the science: the CLI class and the console, exit codes and one-line errors,
stop signals and the launcher watchdog, atomic files and checkpoints, RNG state, run status and which
run a resume continues, SLURM, the W&B run.

Nothing here imports a network, a metric, a model, a data module or a callback
(``tests/house/test_import_graph.py``); ``train.py``, ``sweep.py`` and the callbacks build on it.
"""
