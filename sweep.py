"""`python sweep.py -c configs/sweeps/digits.yaml`: the γ sweep, whose code is the package `sweep/` (beside this
file, the package is what `import sweep` finds); `python -m sweep ...` is the same command."""

from sweep.command import run_from_command_line

if __name__ == "__main__":
    run_from_command_line()
