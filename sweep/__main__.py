"""`python -m sweep -c configs/sweeps/digits.yaml`: the same command as `python sweep.py`."""

from sweep.command import run_from_command_line

run_from_command_line()
