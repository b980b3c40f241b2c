"""Batches of at most ``max_tokens`` padded tokens, as fairseq's ``batch_by_size``.

Sentences are shuffled with the run's seed and the epoch, then stable-sorted by target and
source length (fairseq's ``LanguagePairDataset.ordered_indices``), cut greedily into batches
whose padded size ``n_sentences * max(len)`` stays within ``max_tokens`` (a length is
``max(src_len, tgt_len)`` with EOS), and the batch order is shuffled. The batches of an epoch are
a pure function of ``(seed, epoch)``, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def token_batches(
    src_sizes: Sequence[int] | np.ndarray | Tensor,
    tgt_sizes: Sequence[int] | np.ndarray | Tensor,
    max_tokens: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    max_positions: int | None = None,
) -> list[np.ndarray]:
    """Index arrays, one per batch. Pairs longer than ``max_positions`` are left out."""
    src = np.asarray(src_sizes, dtype=np.int64)
    tgt = np.asarray(tgt_sizes, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(src)) if shuffle else np.arange(len(src))
    order = order[np.argsort(tgt[order], kind="mergesort")]
    order = order[np.argsort(src[order], kind="mergesort")]
    size = np.maximum(src, tgt)
    if max_positions is not None:
        order = order[size[order] <= max_positions]
    batches: list[np.ndarray] = []
    start, longest = 0, 0
    for i, idx in enumerate(order):
        new_longest = max(longest, int(size[idx]))
        if i > start and new_longest * (i - start + 1) > max_tokens:
            batches.append(order[start:i])
            start, new_longest = i, int(size[idx])
        longest = new_longest
    if start < len(order):
        batches.append(order[start:])
    if shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


def pad_right(seqs: Sequence[Tensor], pad: int) -> Tensor:
    """Stack 1-d int tensors into (batch, max_len), padding on the right."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def collate(pairs: Sequence[tuple[Tensor, Tensor]], pad: int, eos: int) -> dict[str, Tensor]:
    """``src`` (batch, n), ``prev`` = EOS + target[:-1], ``tgt`` (each target ends with EOS), ``ntokens``.

    Sources are right-padded (fairseq pads them on the left; with padding masks and positions
    counted from each sentence's first token the two are equivalent).
    """
    src = pad_right([p[0] for p in pairs], pad)
    tgt = pad_right([p[1] for p in pairs], pad)
    prev = pad_right([torch.cat([torch.tensor([eos]), p[1][:-1]]) for p in pairs], pad)
    return {"src": src, "prev": prev, "tgt": tgt, "ntokens": tgt.ne(pad).sum()}


def flat_arrays(dataset) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:  # noqa: ANN001
    """``(src_tokens, src_offsets, tgt_tokens, tgt_offsets)`` of a binarised split, or None for another dataset.

    A :class:`~sigprop.data.iwslt.binarize.TranslationPairs` keeps each side as one flat token array (without
    EOS) and sentence offsets; sentence ``i`` is ``tokens[offsets[i]:offsets[i + 1]]`` + EOS.
    """
    arrays = tuple(getattr(dataset, name, None) for name in ("_src", "_src_off", "_tgt", "_tgt_off"))
    if any(not isinstance(a, Tensor) for a in arrays) or int(getattr(dataset, "eos", -1)) < 0:
        return None
    return arrays  # type: ignore[return-value]


def _padded(flat: np.ndarray, offsets: np.ndarray, idx: np.ndarray, pad: int, eos: int) -> tuple[np.ndarray, ...]:
    """Sentences ``idx`` + EOS right-padded to (batch, max_len), and the mask of their words (EOS excluded)."""
    starts = offsets[idx]
    lens = offsets[idx + 1] - starts
    cols = np.arange(int(lens.max()) + 1)
    words = cols[None, :] < lens[:, None]
    out = np.full(words.shape, pad, dtype=np.int64)
    out[words] = flat[(starts[:, None] + cols[None, :])[words]]
    out[np.arange(len(idx)), lens] = eos
    return out, words


def make_batch(dataset, indices: Sequence[int], pad: int, eos: int) -> dict[str, Tensor]:  # noqa: ANN001
    """Collate ``dataset[i]`` for ``i`` in ``indices`` (a :class:`~sigprop.data.iwslt.binarize.TranslationPairs`).

    For a binarised split the batch is gathered from its flat token arrays in a few vectorised
    operations; the result equals :func:`collate` of the pairs (tests/test_fastpath.py), which
    serves any other dataset.
    """
    arrays = flat_arrays(dataset)
    if arrays is None:
        return collate([dataset[int(i)] for i in indices], pad, eos)
    # numpy, single-threaded: torch's boolean indexing would wake the intra-op thread pool for
    # a few thousand elements, which costs more than it saves when the cores are busy
    src_flat, src_off, tgt_flat, tgt_off = (a.numpy() for a in arrays)
    idx = np.asarray(indices, dtype=np.int64)
    src, _ = _padded(src_flat, src_off, idx, pad, eos)
    tgt, words = _padded(tgt_flat, tgt_off, idx, pad, eos)
    prev = np.full_like(tgt, pad)
    prev[:, 0] = eos
    prev[:, 1:][words[:, :-1]] = tgt[words]
    ntokens = torch.tensor(int(np.count_nonzero(tgt != pad)))
    return {"src": torch.from_numpy(src), "prev": torch.from_numpy(prev), "tgt": torch.from_numpy(tgt),
            "ntokens": ntokens}
