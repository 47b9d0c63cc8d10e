"""A one-entry cache of what a search derives from its reference set (packed bits, prepacked GEMM blocks).

A metric searches one fixed reference set batch after batch; re-deriving the packed form per batch
costs a pass over N x K bytes each time (for oneDNN's int8 prepack at 7168 bits: ~45 % of a search).
The entry is keyed on the tensor object (a weak reference, dropped with the tensor) plus its storage
pointer, shape, strides, dtype and `_version`, which every in-place torch write bumps, and on the
caller's parameters. Writes through a NumPy view of the tensor bypass `_version`: don't.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from torch import Tensor


class ReferenceCache:
    """Keeps the last `build(reference)` result while that reference tensor is alive and unchanged."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: a weakref callback may fire while it is held
        self._entry: tuple[weakref.ref, tuple, Any] | None = None

    @staticmethod
    def _key(reference: Tensor, params: Hashable) -> tuple:
        return (reference.data_ptr(), tuple(reference.shape), reference.stride(), reference.dtype, reference._version, params)

    def get(self, reference: Tensor, build: Callable[[Tensor], Any], params: Hashable = ()) -> Any:
        if reference.is_inference():  # no version counter to tell an in-place write: derived afresh, never kept
            return build(reference)
        key = self._key(reference, params)
        with self._lock:
            entry = self._entry
        if entry is not None and entry[0]() is reference and entry[1] == key:
            return entry[2]
        value = build(reference)
        with self._lock:
            self._entry = (weakref.ref(reference, self._drop), key, value)
        return value

    def _drop(self, dead: weakref.ref) -> None:
        """The cached reference was garbage-collected: free what was derived from it."""
        with self._lock:
            if self._entry is not None and self._entry[0] is dead:
                self._entry = None

    def clear(self) -> None:
        with self._lock:
            self._entry = None
