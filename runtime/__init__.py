"""Run plumbing, apart from the science: exit codes and one-line errors, stop signals, atomic files,
run status and which run a resume continues, SLURM.

Nothing here imports a model, a data module or a callback; ``train.py``, ``sweep.py`` and the
callbacks build on it.
"""
