"""Teachers: what gives every unlabeled image its five attribute scores.

* :mod:`attiqa.teachers.clip`: the method's teacher, CLIP with an antonym prompt pair per
  attribute (paper Eq. 1-2).
* :mod:`attiqa.teachers.analytic`: closed-form measures that need no weights (offline use).
* :mod:`attiqa.teachers.prompts`: choosing the prompt pairs by the two proxy tasks.

:func:`create_teacher` builds either by name.
"""
from __future__ import annotations

from torch import nn

from attiqa.teachers.analytic import AnalyticTeacher
from attiqa.teachers.clip import CLIPTeacher

__all__ = ["AnalyticTeacher", "CLIPTeacher", "TEACHERS", "create_teacher"]

TEACHERS = ("analytic", "clip")


def create_teacher(name: str, **kwargs) -> nn.Module:
    """Builds a teacher by name.

    Args:
        name: ``"analytic"`` or ``"clip"``.
        **kwargs: passed to the teacher (``clip``: ``model=``, ``prompts=``, ``device=``).
    """
    if name == "analytic":
        if kwargs:
            raise ValueError(f"the analytic teacher takes no options, got {sorted(kwargs)}")
        return AnalyticTeacher()
    if name == "clip":
        return CLIPTeacher(**kwargs)
    raise ValueError(f"unknown teacher {name!r}; choose one of {TEACHERS}")
