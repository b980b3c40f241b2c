"""A small, general training loop shared by the toy task (Fig 5) and the translation runs.

Public API::

    from sigprop.train import Trainer, TrainConfig, SeededBatches, schedules

    trainer = Trainer(model, step_fn, optimizer, data, TrainConfig(max_updates=2000, log_every=20),
                      lr_schedule=schedules.constant(0.01), hooks=[my_hook], validate=my_validate)
    result = trainer.fit()          # resumes from checkpoint_dir/last.pt when present
    result.table()                  # tidy DataFrame: update, metric, value (+ hook columns)

See :mod:`sigprop.train.loop` for the loop itself.
"""

from sigprop.train import schedules
from sigprop.train.data import SeededBatches
from sigprop.train.loop import (
    LogContext,
    TrainConfig,
    Trainer,
    TrainResult,
    pick_device,
    rng_state,
    set_rng_state,
    to_device,
)

__all__ = [
    "LogContext",
    "SeededBatches",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "pick_device",
    "rng_state",
    "schedules",
    "set_rng_state",
    "to_device",
]
