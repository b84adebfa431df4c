"""Chemical elements: the one home of the supported atomic numbers.

Atomic numbers ``z`` run from 1 (H) to :data:`MAX_Z` (118, Og); embeddings and
per-element tables have ``MAX_Z + 1`` rows, indexed by ``z`` (row 0 unused).

>>> MAX_Z
118
"""

__all__ = ["MAX_Z"]

MAX_Z: int = 118
