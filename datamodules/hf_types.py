"""The Hugging Face ``datasets`` types, for the annotations of the data modules' own files.

Importing ``datasets`` takes about a second (pandas, pyarrow, the Hub client), and a command's first line
must not wait for it (``bench/bench_startup.py``): it is imported where data is loaded. An annotation
would usually import it under ``if TYPE_CHECKING:``, but jsonargparse executes that block of the module
of every class a config names while it reads the class's signature, before any error or ``--help`` line.
So ``image_datamodule.py`` and ``token_datamodule.py`` annotate with ``hf_types.Dataset``: this module's
block is read by type checkers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset as Dataset  # re-exported for the data modules' annotations
