"""Zero-shot benchmark scoring of teachers and students with the published protocol.

`evaluation.si_boundary_f1` is the detail metric (scale-invariant boundary F1, `boundary.py`).
"""

from evaluation.boundary import si_boundary_f1

__all__ = ["si_boundary_f1"]
