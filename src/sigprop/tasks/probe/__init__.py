"""Fig S7: a rank-collapse probe of models people build, at initialisation (docs/supplementary.md).

This package's top level is free of torch and transformers (the aggregate, checks and plot jobs import it);
:mod:`sigprop.tasks.probe.adapters` builds and measures the models.

Real architectures of Hugging Face ``transformers`` (the optional extra ``models``: ``pip install -e
".[models]"``), built from configs constructed here, with random weights and nothing downloaded
(``HF_HUB_OFFLINE=1``): GPT-2 (PRE-LN, causal LM), BERT (POST-LN, masked LM), Llama (PRE-RMSNorm, SwiGLU,
rotary positions, causal LM) and ViT (PRE-LN, image classification). Each is built at the library's own
initialisation (``initializer_range`` 0.02), then measured per block through forward hooks on the residual
stream: the mean pairwise token cosine and the mean token norm of the input of block 1 (layer 0) and of
every block's output, and the Frobenius norms of the gradients of the query, key and value weights of one
loss on a fixed batch (the same for every seed, arm and depth: ``batch_seed``).

Arms (``arm``), paired: seed s draws the same weights in every arm of a model (``torch.manual_seed(s)``
before the build), and an arm only rescales some of them:

* GPT-2 ``built`` as the library initialises it (``c_proj`` of attention and MLP with std
  0.02/sqrt(2 L), GPT-2's "scale the weights of residual layers by 1/sqrt(N)"); ``unscaled``: the same
  ``c_proj`` weights times sqrt(2 L), i.e. drawn from N(0, 0.02^2): the init of ``transformers`` 5.14.1,
  where the scaling was silently skipped (huggingface/transformers#47458, fixed by #47459 in 5.15.0);
* Llama ``default``: every linear weight N(0, 0.02^2) (the library's init); ``scaled``: ``o_proj`` and
  ``down_proj`` times 1/sqrt(2 L) (GPT-2's rule applied to Llama's residual output projections);
* ``twin`` (GPT-2 and BERT): the model with ReLU instead of GELU, in float64, measured beside the project's
  own block (:class:`sigprop.model.Stack`, PRE-LN for GPT-2, POST-LN for BERT) with the same weights copied
  in, run from the same layer-0 hidden state through the model's own head and loss: an independent
  cross-check of :mod:`sigprop.model` (``xcheck_*`` rows: largest deviation per layer).

Losses: GPT-2 and Llama the causal LM loss on random token ids (labels = inputs, shifted inside the model),
BERT the masked-LM loss predicting every input token (no token masked: at init only the gradient's path
matters), ViT cross-entropy of random labels on N(0, 1) images.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

#: the version of ``transformers`` the extra pins (pyproject.toml), quoted in messages
TRANSFORMERS_PIN = "5.25.0"
INSTALL = f'pip install -e ".[models]"  (transformers=={TRANSFORMERS_PIN}; CPU torch is enough)'

MODELS = ("gpt2", "bert", "llama", "vit")
#: the arms of each model; the first is the model as the library builds it
ARMS: dict[str, tuple[str, ...]] = {
    "gpt2": ("built", "unscaled", "twin"),
    "bert": ("built", "twin"),
    "llama": ("default", "scaled"),
    "vit": ("built",),
}
MODEL_LABELS = {"gpt2": "GPT-2", "bert": "BERT", "llama": "Llama", "vit": "ViT"}
ARM_LABELS = {
    "built": "as built",
    "unscaled": "c_proj unscaled (#47458)",
    "default": "default std",
    "scaled": "o/down_proj / sqrt(2L)",
    "twin": "ReLU twin (cross-check)",
}
#: the std the library draws linear weights from (every config here leaves initializer_range at 0.02)
INIT_STD = 0.02


class MissingExtra(ImportError):
    """The optional dependency ``transformers`` is not installed: the message says what to install."""


def require_transformers() -> Any:
    """Import ``transformers`` offline (``HF_HUB_OFFLINE=1``); raise :class:`MissingExtra` naming the install."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
    except ModuleNotFoundError as err:
        raise MissingExtra(f"Fig S7 (the model probe) needs Hugging Face transformers, which is not installed: "
                           f"{INSTALL}") from err
    return transformers


def depth_scaled_std(n_layers: int, std: float = INIT_STD) -> float:
    """GPT-2's std of a residual output projection: std / sqrt(2 L) (two residual branches per block)."""
    return std / math.sqrt(2 * n_layers)


def transformers_installed() -> bool:
    """Whether ``transformers`` can be imported here (looked up, not imported)."""
    return importlib.util.find_spec("transformers") is not None
