"""One translation run: train one method at one depth and seed on the shared loop (rule ``train_translation``).

Files in the run directory (``results/raw/translation/<dataset>/<method>/layers~<X>/seed~<s>/``):

* ``log.parquet``: tidy log (step, metric, side = encoder/decoder, layer, value, plus the run's keys): training loss
  and NLL, lr, tau, validation loss, and per layer the Wq/Wk/Wv gradient norms, token cosine,
  token norm and alphas (step 0 = initialisation);
* ``train.json``: the training summary (updates, diverged, best update and validation loss, wall time), the
  spec and provenance;
* ``checkpoint_best.pt``: the best validation checkpoint (``{"model", "update", "score"}``; ``model`` is None
  when the run diverged before its first validation);
* ``state/``, while the job runs: the loop's resumable ``last.pt``, ``best.pt`` and a JSON-lines log. A killed
  job restarted with the same spec and the same code (:func:`fingerprint`) resumes there
  (``torch.load(weights_only=True)``); ``state/`` is deleted once every output above is written, so a rerun
  (after a code or config change) trains from update 0.

The test-set evaluation (beam search, BLEU: ``eval.parquet``, ``eval.json``, ``hypotheses.txt``) is
:mod:`sigprop.tasks.translation.evaluation`, a rule of its own: this module imports neither it nor the search or
BLEU code, so editing those reruns evaluation, not training (and does not change :func:`fingerprint`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sigprop.codehash import module_hash
from sigprop.io import atomic_path, config_hash, provenance, write_table
from sigprop.tasks.translation import selection
from sigprop.tasks.translation.task import TranslationTask
from sigprop.train import TrainConfig, Trainer, pick_device

log = logging.getLogger("sigprop.tasks.translation")

#: the training summary (read by the evaluation rule, :mod:`sigprop.tasks.translation.evaluation`)
TRAIN_SUMMARY = "train.json"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (dropout draws from torch's global generator)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fingerprint(spec: Mapping[str, Any], code: str | None = None) -> str:
    """Identifies the training: the spec (not its evaluation) and the code the job imports.

    ``code`` defaults to :func:`sigprop.codehash.module_hash` of this module (the files training can import): a
    checkpoint of another spec or written by other code is not resumed.
    """
    code = module_hash(__name__) if code is None else code
    return config_hash({"spec": {k: v for k, v in spec.items() if k not in ("evaluation", "config")}, "code": code})


def tidy_log(rows: list[Mapping[str, Any]], spec: Mapping[str, Any], diverged: bool) -> pd.DataFrame:
    """Loop rows -> the tidy table of ``log.parquet``."""
    df = pd.DataFrame(rows).rename(columns={"update": "step"})
    for col, fill in (("side", ""), ("layer", -1)):
        df[col] = df[col].fillna(fill) if col in df else fill
    df["layer"] = df.layer.astype(int)
    df["value"] = df.value.astype(float)
    keys = run_keys(spec)
    for k, v in keys.items():
        df[k] = v
    df["diverged"] = diverged
    return df[[*keys, "diverged", "step", "metric", "side", "layer", "value"]]


def run_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The columns that identify a run in every table."""
    return {
        "dataset": spec["dataset"],
        "method": spec["method"],
        "method_label": spec["method_config"].get("label", spec["method"]),
        "layers": int(spec["layers"]),
        "seed": int(spec["seed"]),
    }


def _fit(
    spec: Mapping[str, Any],
    data_dir: str | Path,
    state: Path,
    progress: bool | None,
    stop_at: int | None = None,
) -> tuple[Any, list[dict], str]:
    """Build the run of ``spec`` (one lr) and fit it with its checkpoints in ``state``; returns the loop's result,
    the rows at update 0 (probes and the validation loss at init) and the fingerprint."""
    device = pick_device(spec.get("device", "cpu"), "training")
    seed_everything(int(spec["seed"]))
    task = TranslationTask(spec, data_dir, device)
    model = task.build_model()
    # deterministic, recomputed on resume; validation in eval mode draws no random numbers
    init_rows = [{"update": 0, **r} for r in task.probe_rows(model)]
    model.eval()
    with torch.no_grad():
        init_rows += [{"update": 0, "metric": k, "value": v} for k, v in task.validate(model).items()]
    model.train()
    optimizer = task.build_optimizer(model)
    tr = spec["training"]
    sel = spec.get("selection")
    cfg = TrainConfig(
        max_updates=task.total_updates,
        log_every=int(tr.get("log_every", 100)),
        eval_every=int(tr.get("valid_every", 1000)),
        checkpoint_every=int(tr.get("checkpoint_every", 1000)),
        checkpoint_dir=state,
        log_path=state / "log.jsonl",
        device=str(device),
        bf16=bool(tr.get("bf16", False)),
        progress=progress,
        clip_norm=float(tr.get("clip_norm", 0.0)),
        best_metric="valid_loss",
        higher_is_better=False,
        fingerprint=fingerprint(spec),
        eval_at=(selection.select_update(spec["optimizer"], sel),) if sel else (),
        stop_at=stop_at,
    )
    trainer = Trainer(
        model,
        task.step,
        optimizer,
        task.data(),
        cfg,
        lr_schedule=task.lr_schedule(),
        hooks=[task.log_hook],
        before_update=[task.tau_setter(model)],
        validate=task.validate,
    )
    result = trainer.fit()
    log.info(
        "training %s after %d updates (resumed from %d) in %.1f s",
        result.status,
        result.updates,
        result.resumed_from,
        result.wall_s,
    )
    return result, init_rows, cfg.fingerprint


def train_prefix(spec: Mapping[str, Any], data_dir: str | Path, out_dir: str | Path, lr: float) -> dict[str, Any]:
    """One grid point of an lr selection (:mod:`sigprop.tasks.translation.selection`): seed 0 of ``spec`` at ``lr``
    up to the selection update, validated there; writes ``prefix.json`` (the validation loss) and the resumable
    ``last.pt`` from which the winner continues. Returns the summary."""
    out = Path(out_dir)
    spec = selection.resolve_spec(spec, lr)
    stop = selection.select_update(spec["optimizer"], spec["selection"])
    state = out / "state"
    if state.exists():
        shutil.rmtree(state)  # a prefix always starts at update 0
    result, _, fp = _fit(spec, data_dir, state, None, stop_at=stop)
    losses = [r["value"] for r in result.rows if r["metric"] == "valid_loss" and r["update"] == stop]
    summary = {**run_keys(spec), "lr": float(lr), "select_update": stop, "diverged": result.diverged,
               "updates": result.updates, "select_valid_loss": losses[-1] if losses and not result.diverged else None,
               "train_wall_s": result.wall_s}
    if result.status == "stopped":
        os.replace(state / "last.pt", out / selection.PREFIX_STATE)
        if (state / "best.pt").exists():  # the continuation's best checkpoint so far
            os.replace(state / "best.pt", out / "best.pt")
    else:  # diverged: nothing to continue
        with atomic_path(out / selection.PREFIX_STATE) as tmp:
            torch.save({"diverged": True}, tmp)
    meta = provenance(config=spec.get("config"), spec_hash=config_hash(spec), fingerprint=fp, **run_keys(spec))
    with atomic_path(out / selection.PREFIX_SUMMARY) as tmp:
        tmp.write_text(json.dumps({"summary": summary, "spec": spec, "provenance": meta}, indent=2, default=str) + "\n")
    shutil.rmtree(state)
    return summary


def train(
    spec: Mapping[str, Any],
    data_dir: str | Path,
    out_dir: str | Path,
    progress: bool | None = None,
    selection_file: str | Path | None = None,
) -> dict[str, Any]:
    """Train (resuming if a checkpoint of the same spec and code exists); write the files; return the summary.

    An optimiser with an lr grid needs ``selection_file`` (``selection.json`` of the method): the run trains at the
    selected lr, and the winner's continuation (seed 0 at the selection's depth) starts from its prefix checkpoint.
    """
    out = Path(out_dir)
    state = out / "state"
    sel = None
    if selection_file is not None:
        sel = selection.read_selection(selection_file, spec)
    spec = selection.resolve_spec(spec, sel["lr"] if sel else None)
    if sel and selection.continues_selection(sel, spec) and not (state / "last.pt").exists():
        state.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sel["checkpoint"], state / "last.pt")
        if (Path(sel["checkpoint"]).parent / "best.pt").exists():
            shutil.copyfile(Path(sel["checkpoint"]).parent / "best.pt", state / "best.pt")
        log.info("continuing the selected lr %g from %s", sel["lr"], sel["checkpoint"])
    result, init_rows, fp = _fit(spec, data_dir, state, progress)
    valid0 = next(r["value"] for r in init_rows if r["metric"] == "valid_loss")
    keys = run_keys(spec)
    meta = provenance(config=spec.get("config"), spec_hash=config_hash(spec), fingerprint=fp, **keys)
    write_table(
        tidy_log(init_rows + result.rows, spec, result.diverged), out / "log.parquet", {**meta, "status": result.status}
    )

    summary: dict[str, Any] = {
        **keys,
        "config": spec.get("config"),
        "diverged": result.diverged,
        "updates": result.updates,
        "resumed_from": result.resumed_from,  # 0: trained from update 0
        "best_update": result.best_update,
        "best_valid_loss": result.best_score,
        "valid_loss_init": valid0,  # update 0
        "lr": float(spec["optimizer"]["lr"]),
        "lr_selected": sel is not None,
        "train_wall_s": result.wall_s,
    }
    best = state / "best.pt"
    with atomic_path(out / "checkpoint_best.pt") as tmp:
        if best.exists():
            shutil.copyfile(best, tmp)
        else:  # diverged before the first validation
            torch.save({"model": None, "update": None, "score": None, "diverged": True}, tmp)
    with atomic_path(out / TRAIN_SUMMARY) as tmp:
        tmp.write_text(json.dumps({"summary": summary, "spec": spec, "provenance": meta}, indent=2, default=str) + "\n")
    shutil.rmtree(state)  # every output is written: nothing to resume (a rerun trains from update 0)
    return summary
