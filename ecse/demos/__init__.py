"""Demonstrations behind the command line: the methane PET demo (``ecse demo``,
:mod:`ecse.demos.methane`) and the rotated-shape classification demo (``ecse shapes``,
:mod:`ecse.demos.shape_demo`, on the synthetic shapes of :mod:`ecse.demos.shapes`).

Nothing in the library imports this package; it imports the library.
"""

__all__: list[str] = []
