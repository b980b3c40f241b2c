"""The translation task plugged into the shared training loop: data, batches, loss, validation, probes.

:class:`TranslationTask` owns everything specific to IWSLT training: the binarised splits, the
fairseq-style token batches, label-smoothed cross-entropy, validation loss and the per-layer probes.
The optimisation loop itself (checkpoints, resume, divergence, logging cadence, best checkpoint) is
:mod:`sigprop.train.loop`'s; the test-set evaluation (beam search, BLEU) is
:mod:`sigprop.tasks.translation.evaluation`, a rule of its own (nothing here imports it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sigprop.data.iwslt.binarize import Dictionary, load_split
from sigprop.io import BadInput
from sigprop.model import EncoderDecoder
from sigprop.tasks.translation import methods, probes
from sigprop.tasks.translation.batching import make_batch, token_batches
from sigprop.train import to_device
from sigprop.train.schedules import Schedule


def translation_step(
    model: torch.nn.Module, batch: Mapping[str, Tensor], eps: float, pad: int, fused: bool = True
) -> dict[str, Tensor]:
    """One training step's loss: mean label-smoothed cross-entropy per target token, its NLL, the token count.

    ``fused`` (for an :class:`EncoderDecoder`): the tied read-out and the loss of the non-pad target
    positions only, in one chunked pass (:func:`methods.linear_label_smoothed_nll`); otherwise the
    full (batch, n, vocab) logits and :func:`methods.label_smoothed_nll`. Equal up to rounding.
    """
    loss_sum, nll_sum = loss_sums(model, batch, eps, pad, fused)
    ntok = batch["ntokens"].float()
    return {"loss": loss_sum / ntok, "nll": nll_sum.detach() / ntok, "tokens": ntok}


def loss_sums(
    model: torch.nn.Module, batch: Mapping[str, Tensor], eps: float, pad: int, fused: bool = True
) -> tuple[Tensor, Tensor]:
    """Label-smoothed loss and NLL summed over the batch's target tokens (see :func:`translation_step`)."""
    if fused and isinstance(model, EncoderDecoder):
        out, _ = model.features(batch["src"], batch["prev"])
        return methods.linear_label_smoothed_nll(out, model.embed.weight, batch["tgt"], eps, pad)
    logits, _ = model(batch["src"], batch["prev"])
    return methods.label_smoothed_nll(logits, batch["tgt"], eps, pad)


class EpochBatches:
    """Training batches epoch after epoch; its state is ``(epoch, index)`` (checkpointed by the loop)."""

    def __init__(self, task: TranslationTask) -> None:
        self.task = task
        self.epoch, self.index = 0, 0
        self._batches: list[np.ndarray] | None = None

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        return self

    def __next__(self) -> dict[str, Tensor]:
        if self._batches is None:
            self._batches = self.task.epoch_batches(self.epoch)
        if not self._batches:  # every epoch is the same sentences reshuffled: none would ever give a batch
            raise BadInput(
                f"no training batch: {self.task.data_dir / 'train.pt'} holds {len(self.task.train)} sentence "
                f"pairs, none of at most model.max_positions = {self.task.max_positions} tokens; raise "
                "max_positions in the config's translation model section, or prepare the data again"
            )
        while self.index >= len(self._batches):
            self.epoch, self.index = self.epoch + 1, 0
            self._batches = self.task.epoch_batches(self.epoch)
        idx = self._batches[self.index]
        self.index += 1
        return make_batch(self.task.train, idx, self.task.pad, self.task.eos)

    def state_dict(self) -> dict[str, int]:
        """The position of the next batch."""
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue at a saved position."""
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._batches = None


class TranslationTask:
    """One run's data and task logic (``spec``: see :func:`sigprop.tasks.translation.plan.run_spec`)."""

    def __init__(self, spec: Mapping[str, Any], data_dir: str | Path, device: torch.device | str = "cpu") -> None:
        self.spec = spec
        self.data_dir = Path(data_dir)
        self.device = torch.device(device)
        self.train_cfg = spec["training"]
        self.dictionary = Dictionary.load(self.data_dir / "dict.txt")
        self.pad, self.eos = self.dictionary.pad_index, self.dictionary.eos_index
        self.train = load_split(self.data_dir, "train")
        self.valid = load_split(self.data_dir, "valid")
        self.max_positions = int(spec["model"].get("max_positions", 1024))
        self.max_tokens = int(self.train_cfg["max_tokens"])
        self.eps = float(self.train_cfg.get("label_smoothing", 0.0))
        self.seed = int(spec["seed"])
        #: the read-out and loss on non-pad rows in one pass (:func:`translation_step`)
        self.fused_loss = True
        n_valid = self.train_cfg.get("valid_max_sentences") or len(self.valid)
        self.valid_batches = token_batches(
            self.valid.src_sizes[:n_valid],
            self.valid.tgt_sizes[:n_valid],
            self.max_tokens,
            shuffle=False,
            max_positions=self.max_positions,
        )
        n_probe = min(int(self.train_cfg.get("probe_sentences", 32)), len(self.valid))
        self.probe_batch = make_batch(self.valid, range(n_probe), self.pad, self.eos)

    # ---- model and optimiser ----------------------------------------------------------------

    def build_model(self) -> EncoderDecoder:
        """The method's encoder-decoder, weights drawn from the run's seed."""
        gen = torch.Generator().manual_seed(self.seed)
        model = methods.build_model(
            self.spec["model"],
            self.spec["method_config"],
            self.spec["layers"],
            len(self.dictionary),
            self.pad,
            generator=gen,
        )
        return model.to(self.device)

    def build_optimizer(self, model: EncoderDecoder) -> torch.optim.Optimizer:
        """AdamW / SGDW from the method's optimiser config."""
        return methods.build_optimizer(model.parameters(), self.spec["optimizer"], self.device)

    @property
    def total_updates(self) -> int:
        """Training updates of this run's optimiser."""
        return int(self.spec["optimizer"]["updates"])

    def lr_schedule(self) -> Schedule:
        """Learning rate of update t = 1, 2, ... (set by the training loop before the update): fairseq's counter,
        which steps the scheduler after each update, so update t uses the schedule at t - 1 updates done (update
        1 uses the lr of update 0)."""
        schedule = methods.lr_schedule(self.spec["optimizer"])
        return lambda t: schedule(t - 1)

    def tau_at(self, update: int) -> float:
        """Inverse temperature at update ``update`` (0 at initialisation)."""
        return methods.tau_at(update, self.spec["method_config"])

    def tau_setter(self, model: EncoderDecoder) -> Callable[[int], None]:
        """A ``before_update`` callback that applies the tau warm-up, counted as the lr (:meth:`lr_schedule`):
        update t uses tau at t - 1 updates done (update 1: tau at init)."""
        return lambda t: model.set_tau(self.tau_at(t - 1))

    # ---- data -------------------------------------------------------------------------------

    def data(self) -> EpochBatches:
        """The endless, checkpointable stream of training batches (on the CPU)."""
        return EpochBatches(self)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The training batches of one epoch (a function of seed and epoch only)."""
        return token_batches(
            self.train.src_sizes,
            self.train.tgt_sizes,
            self.max_tokens,
            seed=self.seed,
            epoch=epoch,
            max_positions=self.max_positions,
        )

    # ---- loss, validation, probes -----------------------------------------------------------

    def step(self, model: EncoderDecoder, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Mean label-smoothed cross-entropy per target token (the loss fairseq's gradient uses), and its NLL."""
        return translation_step(model, batch, self.eps, self.pad, fused=self.fused_loss)

    @torch.no_grad()
    def validate(self, model: EncoderDecoder) -> dict[str, float]:
        """Label-smoothed loss and NLL per token on the validation split (the loop sets eval mode)."""
        loss = nll = ntok = 0.0
        for idx in self.valid_batches:
            batch = to_device(make_batch(self.valid, idx, self.pad, self.eos), self.device)
            ls, nl = loss_sums(model, batch, self.eps, self.pad, self.fused_loss)
            loss, nll, ntok = loss + float(ls), nll + float(nl), ntok + float(batch["ntokens"])
        return {"valid_loss": loss / ntok, "valid_nll": nll / ntok}

    def probe_rows(self, model: EncoderDecoder) -> list[dict]:
        """Per-layer cosine and activation norms on the fixed validation batch, the alphas and tau."""
        rows = probes.hidden_state_rows(model, to_device(self.probe_batch, self.device)) + probes.alpha_rows(model)
        tau = next((m.tau for m in model.modules() if hasattr(m, "tau")), float("nan"))
        return rows + [{"metric": "tau", "value": float(tau)}]

    def log_hook(self, ctx: Any) -> list[dict]:
        """The training loop's log hook: gradient norms of this update, then :meth:`probe_rows`."""
        return probes.grad_rows(ctx.model) + self.probe_rows(ctx.model)
