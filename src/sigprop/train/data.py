"""Seeded, checkpointable batch streams for :class:`sigprop.train.Trainer`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import torch

B = TypeVar("B")


class SeededBatches(Generic[B]):
    """An endless stream of batches drawn by ``sample(generator)`` from one seeded ``torch.Generator``.

    The generator's state is the whole state of the stream, so :meth:`state_dict` /
    :meth:`load_state_dict` let a resumed run continue with exactly the batches an uninterrupted
    run would have seen (the :class:`~sigprop.train.Trainer` saves it in every checkpoint).

    Example::

        data = SeededBatches(lambda g: reversal_batch(g, 64, 20, 10), seed=1)
        x, y = next(iter(data))
    """

    def __init__(self, sample: Callable[[torch.Generator], B], seed: int) -> None:
        self.sample = sample
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[B]:
        return self

    def __next__(self) -> B:
        return self.sample(self.generator)

    def state_dict(self) -> dict[str, Any]:
        """The generator state (a uint8 tensor) and the seed."""
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state saved by :meth:`state_dict`."""
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator"].cpu())
