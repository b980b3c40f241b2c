"""Learning-rate schedules: plain functions of the update number ``t`` (1, 2, ...) returning the lr.

A schedule is a pure function of ``t``, so a checkpoint needs only the update count to restore it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Schedule = Callable[[int], float]


def constant(lr: float) -> Schedule:
    """``lr`` at every update."""
    return lambda t: lr


def inverse_sqrt(lr: float, warmup: int, init_lr: float = 0.0) -> Schedule:
    """fairseq's ``inverse_sqrt``: linear warm-up from ``init_lr`` to ``lr`` over ``warmup`` updates, then
    ``lr * sqrt(warmup / t)``."""

    def schedule(t: int) -> float:
        if t < warmup:
            return init_lr + (lr - init_lr) * t / warmup
        return lr * (warmup / t) ** 0.5

    return schedule


def step_decay(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``lr * gamma**k`` where ``k`` is the number of milestones already reached (``t >= milestone``)."""
    marks = sorted(milestones)
    return lambda t: lr * gamma ** sum(t >= m for m in marks)


def linear_warmup(lr: float, warmup: int) -> Schedule:
    """``lr * min(1, t / warmup)``."""
    return lambda t: lr * min(1.0, t / warmup) if warmup > 0 else lr
