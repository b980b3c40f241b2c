"""A small, general training loop: one update per batch, tidy logs, checkpoints that resume exactly.

The loop, in the spirit of nanoGPT::

    for t in start+1 .. max_updates:
        lr = schedule(t) on every param group
        before_update hooks (e.g. a temperature warm-up)
        loss, extras = step_fn(model, batch)    # under bf16 autocast if asked, on CUDA
        zero_grad; backward; optional grad clipping; optimizer.step()
        running sums of loss and extras stay on the device (no host sync per update)
        every log_every: one transfer to the host, check for NaN/inf, log rows, run the hooks
        every eval_every: validate(model) -> score, keep the best checkpoint
        every checkpoint_every: save model, optimizer, step, RNG and data states, log rows so far
        at stop_at (if set): save that state and return status "stopped" (a rerun with a later stop resumes)

Log rows are tidy dicts ``{"update": t, "metric": name, "value": x, ...}``; hooks may add keys (for
example ``layer`` and ``matrix``). They are appended to ``log_path`` (JSON lines) as they are made and
returned at the end as :attr:`TrainResult.rows` / :meth:`TrainResult.table`.

Checkpoints hold only tensors and primitive containers, so they load with
``torch.load(..., weights_only=True)``. Restarting the same run (same ``checkpoint_dir`` and
``fingerprint``) resumes from ``last.pt``; on CPU the final parameters equal those of an uninterrupted
run bit for bit (tests/test_train.py).

A non-finite loss is detected at the next log, eval or checkpoint update (at most ``log_every``
updates late, since checking every update would synchronise with the device): the run stops, keeps
its log rows, adds ``{"metric": "diverged", "value": 1.0}`` and returns ``status="diverged"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sigprop.io import atomic_path

log = logging.getLogger(__name__)

Batch = Any
StepOutput = Tensor | Mapping[str, Tensor]
StepFn = Callable[[nn.Module, Batch], StepOutput]
Schedule = Callable[[int], float]
Row = dict[str, Any]
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """How long to train and what to log, evaluate and save (all counts are in updates)."""

    max_updates: int
    log_every: int = 100
    log_first: bool = True  # also log after update 1
    eval_every: int = 0  # 0: validate only at the end (when a validate callback is given)
    checkpoint_every: int = 0  # 0: only the final checkpoint (when checkpoint_dir is set)
    checkpoint_dir: str | os.PathLike | None = None
    log_path: str | os.PathLike | None = None  # JSON lines, appended at every log step
    device: str = "auto"  # "auto": cuda when available, else cpu
    bf16: bool = False  # bf16 autocast for step_fn and validate (CUDA only; ignored on CPU)
    progress: bool | None = None  # tqdm bar; None: only when stderr is a terminal
    clip_norm: float = 0.0  # > 0: clip the global grad norm (the norm before clipping is logged: grad_norm_total)
    best_metric: str | None = None  # key of validate's dict that scores a checkpoint
    higher_is_better: bool = True
    fingerprint: str = ""  # identifies the run; a checkpoint with another fingerprint is not resumed
    eval_at: tuple[int, ...] = ()  # further updates to validate at (e.g. an lr selection's comparison point)
    stop_at: int | None = None  # stop after this update (< max_updates) with a resumable checkpoint: "stopped"


@dataclass
class LogContext:
    """What a log hook sees: the model, optimizer and update right after ``optimizer.step()``.

    Parameter ``.grad`` still holds this update's gradients (they are cleared at the next update).
    ``metrics`` are the running averages just logged (``loss`` and the step function's extras).
    """

    update: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    metrics: dict[str, float]
    trainer: Trainer


LogHook = Callable[[LogContext], Iterable[Mapping[str, Any]] | None]


@dataclass
class TrainResult:
    """The outcome of :meth:`Trainer.fit`."""

    status: Literal["completed", "diverged", "stopped"]
    updates: int  # the last update performed
    rows: list[Row]
    best_score: float | None = None
    best_update: int | None = None
    resumed_from: int = 0  # the checkpoint's update, 0 for a fresh run
    wall_s: float = 0.0

    @property
    def diverged(self) -> bool:
        """Whether the loss became NaN or infinite."""
        return self.status == "diverged"

    def table(self) -> pd.DataFrame:
        """The log rows as a tidy DataFrame (update, metric, value, and any extra keys)."""
        return pd.DataFrame(self.rows)


def pick_device(name: str = "auto", purpose: str = "running") -> torch.device:
    """``"auto"``: ``cuda`` when available, else the CPU; ``"cuda"`` when CUDA is absent: the CPU, with a warning
    ("device cuda requested but not available: <purpose> on the CPU"); otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        log.warning("device cuda requested but not available: %s on the CPU", purpose)
        return torch.device("cpu")
    return torch.device(name)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move every tensor inside tuples, lists, dicts and dataclasses to ``device`` (non-blocking)."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch) if f.init})
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as tensors and primitives only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].cpu().numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _split(out: StepOutput) -> tuple[Tensor, dict[str, Tensor]]:
    """A step function's output as ``(loss, extras)``."""
    if isinstance(out, Tensor):
        return out, {}
    extras = {k: v for k, v in out.items() if k != "loss"}
    return out["loss"], extras


def _plain(value: Any) -> Any:
    """NumPy and torch scalars to Python numbers (checkpoints and JSON hold primitives only)."""
    if isinstance(value, Tensor | np.generic):
        return value.item()
    return value


class Trainer:
    """Train ``model`` with ``step_fn`` on ``data`` (see the module docstring for the loop).

    Args:
        model: any module; moved to the configured device here (parameters move in place, so an
            optimizer created before or after refers to the same tensors).
        step_fn: ``step_fn(model, batch)`` returns the scalar loss, or a dict with ``"loss"`` and
            other scalar tensors (e.g. token accuracy) to average over each log interval.
        optimizer: any ``torch.optim`` optimizer over the model's parameters.
        data: an iterable of batches (tensors, or tuples / lists / dicts of tensors). If it has
            ``state_dict`` / ``load_state_dict`` (e.g. :class:`~sigprop.train.SeededBatches`), its state
            is checkpointed; otherwise a resumed run skips the batches already used.
        config: :class:`TrainConfig`.
        lr_schedule: ``lr = lr_schedule(t)`` set before update ``t`` on every param group (a function of
            ``t`` only: nothing of it is checkpointed); ``None`` keeps the optimizer's lr.
        hooks: called at every log step with a :class:`LogContext`; each returns rows
            (``{"metric": ..., "value": ..., **extra}``; ``update`` is filled in) or ``None``.
        before_update: called with ``t`` before each update (keep them free of host syncs).
        validate: ``validate(model)`` (run under ``no_grad`` in eval mode) returns a score or a dict of
            named values; ``config.best_metric`` names the score in a dict. Every value is logged; the
            best score's model is saved as ``best.pt`` in the checkpoint directory.
    """

    def __init__(
        self,
        model: nn.Module,
        step_fn: StepFn,
        optimizer: torch.optim.Optimizer,
        data: Iterable[Batch],
        config: TrainConfig,
        *,
        lr_schedule: Schedule | None = None,
        hooks: Sequence[LogHook] = (),
        before_update: Sequence[Callable[[int], None]] = (),
        validate: Callable[[nn.Module], float | Mapping[str, float]] | None = None,
    ) -> None:
        self.config = config
        self.device = pick_device(config.device)
        self.model = model.to(self.device)
        self.step_fn = step_fn
        self.optimizer = optimizer
        self.data = data
        self.lr_schedule = lr_schedule
        self.hooks = list(hooks)
        self.before_update = list(before_update)
        self.validate = validate
        self.update = 0
        self.rows: list[Row] = []
        self.best_score: float | None = None
        self.best_update: int | None = None
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        self._first_bad = math.inf
        self._nonfinite = torch.full((), math.inf, device=self.device)  # first update with a bad loss
        self.ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir is not None else None
        self.log_path = Path(config.log_path) if config.log_path is not None else None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: model, optimizer, update, RNG and data states, log rows."""
        state: dict[str, Any] = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.config.fingerprint,
            "update": self.update,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "rows": [{k: _plain(v) for k, v in row.items()} for row in self.rows],
            "sums": {k: v.detach().cpu() for k, v in self._sums.items()},
            "count": self._count,
            "best_score": self.best_score,
            "best_update": self.best_update,
        }
        if hasattr(self.data, "state_dict"):
            state["data"] = self.data.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (data and RNG included)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.update = int(state["update"])
        if "data" in state and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        self.rows = [dict(r) for r in state["rows"]]
        self._sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self._count = int(state["count"])
        self.best_score, self.best_update = state["best_score"], state["best_update"]

    def save_checkpoint(self, name: str = "last.pt") -> Path | None:
        """Write the state atomically to ``checkpoint_dir/name`` (nothing without a checkpoint_dir)."""
        if self.ckpt_dir is None:
            return None
        path = self.ckpt_dir / name
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    def _resume(self) -> int:
        """Load ``last.pt`` if it belongs to this run; return the update it ends at (0 if none)."""
        path = self.ckpt_dir / "last.pt" if self.ckpt_dir is not None else None
        if path is None or not path.exists():
            return 0
        # on the CPU: RNG and generator states must be CPU tensors; load_state_dict moves the rest
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise TypeError(f"holds a {type(state).__name__}, not a checkpoint")
        except Exception as err:  # truncated (killed copy, full disk), overwritten, not a checkpoint at all
            corrupt = path.with_suffix(".corrupt.pt")
            reason = (str(err).strip().splitlines() or ["unreadable"])[0]
            if "Weights only load failed" in reason:  # torch's advice to unpickle it anyway is not ours
                reason = "not a checkpoint of tensors and plain values"
            log.warning("checkpoint %s cannot be read (%s: %s); moved to %s, training restarts from update 0 "
                        "(delete %s once inspected)", path, type(err).__name__, reason[:200], corrupt, corrupt)
            os.replace(path, corrupt)
            return 0
        if state.get("fingerprint") != self.config.fingerprint or state.get("version") != CHECKPOINT_VERSION:
            stale = path.with_suffix(".stale.pt")
            log.warning("checkpoint %s belongs to another run (fingerprint %r, expected %r); moved to %s, "
                        "starting afresh", path, state.get("fingerprint"), self.config.fingerprint, stale)
            os.replace(path, stale)
            return 0
        self.load_state_dict(state)
        log.info("resumed from %s at update %d", path, self.update)
        return self.update

    # ------------------------------------------------------------------ logging
    def _write_log(self, rows: list[Row], mode: str = "a") -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, mode) as fh:
            for row in rows:
                fh.write(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n")

    def _add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        new = [{"update": self.update, **{k: _plain(v) for k, v in row.items()}} for row in rows]
        self.rows += new
        self._write_log(new)

    def _flush_metrics(self) -> tuple[dict[str, float], bool]:
        """Averages since the last log (one host transfer) and whether a non-finite loss was seen."""
        names = list(self._sums)
        values = torch.stack([self._sums[k] for k in names] + [self._nonfinite]).tolist()
        self._first_bad = min(self._first_bad, values[-1])
        metrics = {k: v / max(self._count, 1) for k, v in zip(names, values[:-1])}
        self._sums = {k: torch.zeros_like(v) for k, v in self._sums.items()}
        self._count = 0
        return metrics, math.isfinite(self._first_bad)

    def _bad_loss_seen(self) -> bool:
        self._first_bad = min(self._first_bad, float(self._nonfinite))
        return math.isfinite(self._first_bad)

    def _log_step(self, lr: float | None) -> tuple[dict[str, float], bool]:
        metrics, bad = self._flush_metrics()
        rows: list[Row] = [{"metric": k, "value": v} for k, v in metrics.items()]
        if lr is not None:
            rows.append({"metric": "lr", "value": lr})
        self._add_rows(rows)
        if not bad:
            ctx = LogContext(self.update, self.model, self.optimizer, metrics, self)
            for hook in self.hooks:
                self._add_rows(hook(ctx) or [])
        return metrics, bad

    def _validate(self) -> None:
        assert self.validate is not None
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self._autocast():
            out = self.validate(self.model)
        self.model.train(was_training)
        if isinstance(out, Mapping):
            values = {k: float(v) for k, v in out.items()}
            if self.config.best_metric is None:
                raise ValueError("validate returned a dict: set TrainConfig.best_metric to the key that scores it")
            score = values[self.config.best_metric]
        else:
            score = float(out)
            values = {"val_score": score}
        self._add_rows({"metric": k, "value": v} for k, v in values.items())
        better = self.best_score is None or (score > self.best_score if self.config.higher_is_better
                                             else score < self.best_score)
        if better and math.isfinite(score):
            self.best_score, self.best_update = score, self.update
            if self.ckpt_dir is not None:
                with atomic_path(self.ckpt_dir / "best.pt") as tmp:
                    torch.save({"model": self.model.state_dict(), "update": self.update, "score": score}, tmp)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _set_lr(self, t: int) -> float | None:
        if self.lr_schedule is None:
            return None
        lr = float(self.lr_schedule(t))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _batches(self, start: int) -> Iterator[Batch]:
        it = iter(self.data)
        if start and not hasattr(self.data, "load_state_dict"):
            for _ in range(start):  # a stateless iterable: skip what the first run used
                next(it)
        return it

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train up to ``max_updates`` (resuming from ``last.pt`` if present); return the result."""
        cfg = self.config
        tic = time.perf_counter()
        start = self._resume()
        if start >= cfg.max_updates and any(r["metric"] == "diverged" for r in self.rows):
            return TrainResult("completed", self.update, list(self.rows), self.best_score, self.best_update,
                               start, time.perf_counter() - tic)  # this run had already finished
        if self.log_path is not None:  # the log file mirrors the checkpoint's rows
            self._write_log(self.rows, mode="w")
        batches = self._batches(start)
        show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        bar = tqdm(total=cfg.max_updates, initial=start, disable=not show, dynamic_ncols=True, unit="upd")
        self.model.train()
        diverged = False
        for t in range(start + 1, cfg.max_updates + 1):
            lr = self._set_lr(t)
            for fn in self.before_update:
                fn(t)
            batch = to_device(next(batches), self.device)
            with self._autocast():
                loss, extras = _split(self.step_fn(self.model, batch))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm > 0:
                extras["grad_norm_total"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.optimizer.step()
            self.update = t

            # running sums stay on the device: no host synchronisation in an ordinary update
            for name, value in {"loss": loss, **extras}.items():
                value = value.detach().float()
                self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()
            self._count += 1
            self._nonfinite = torch.where(torch.isfinite(loss.detach()), self._nonfinite,
                                          self._nonfinite.clamp(max=t))
            bar.update(1)

            last = t == cfg.max_updates
            if t % cfg.log_every == 0 or (cfg.log_first and t == 1) or last:
                metrics, diverged = self._log_step(lr)
                if diverged:
                    break
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)
            if self.validate is not None and ((cfg.eval_every and t % cfg.eval_every == 0) or last
                                              or t in cfg.eval_at):
                if diverged := self._bad_loss_seen():
                    break
                self._validate()
            if cfg.checkpoint_every and t % cfg.checkpoint_every == 0 and not last:
                if diverged := self._bad_loss_seen():  # never save parameters that may be NaN
                    break
                self.save_checkpoint()
            if cfg.stop_at is not None and t == cfg.stop_at and not last:
                if diverged := self._bad_loss_seen():
                    break
                self.save_checkpoint()  # no closing row: resuming continues the run as if never stopped
                bar.close()
                return TrainResult("stopped", self.update, list(self.rows), self.best_score, self.best_update,
                                   start, time.perf_counter() - tic)
        bar.close()
        if diverged:
            first = int(self._first_bad)
            log.warning("non-finite loss at update %d: stopped at update %d", first, self.update)
            self._add_rows([{"metric": "diverged", "value": 1.0},
                            {"metric": "first_nonfinite_update", "value": float(first)}])
        else:
            self._add_rows([{"metric": "diverged", "value": 0.0}])
            self.save_checkpoint()  # the final state, closing row included: a rerun returns at once
        status: Literal["completed", "diverged"] = "diverged" if diverged else "completed"
        return TrainResult(status, self.update, list(self.rows), self.best_score, self.best_update, start,
                           time.perf_counter() - tic)
