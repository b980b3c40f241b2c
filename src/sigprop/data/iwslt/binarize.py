"""The vocabulary and binary format training reads: :class:`Dictionary`, :func:`binarize`, :class:`TranslationPairs`.

:func:`binarize` builds a joint fairseq-style dictionary from the training split (``<s>``=0, ``<pad>``=1,
``</s>``=2, ``<unk>``=3, then words by descending count, ties broken by code point order, count threshold 0,
padded with ``madeupwordNNNN`` to a multiple of 8 like fairseq) and writes ``{split}.pt`` files that load with
``torch.load(weights_only=True)``; :class:`TranslationPairs` reads one back as ``(src_ids, tgt_ids)`` pairs.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigprop.data.iwslt.bpe import detok_bpe
from sigprop.data.iwslt.corpus import LANGS, SPLITS, SRC_LANG, TGT_LANG
from sigprop.data.iwslt.textio import read_lines, sha256_file, write_json, write_lines
from sigprop.io import atomic_path

if TYPE_CHECKING:  # torch is imported where it is used, so the workflow parses without it
    import torch

BIN_FORMAT = "sigprop-iwslt-bin-v1"


class Dictionary:
    """Joint fairseq-style vocabulary: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, words."""

    BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
    SPECIALS = (BOS, PAD, EOS, UNK)

    bos_index, pad_index, eos_index, unk_index = 0, 1, 2, 3

    def __init__(self) -> None:
        self.symbols: list[str] = list(self.SPECIALS)
        self.counts: list[int] = [0] * len(self.SPECIALS)
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, sym: str) -> bool:
        return sym in self._index

    def _add(self, sym: str, count: int) -> None:
        if sym in self._index:
            self.counts[self._index[sym]] += count
            return
        self._index[sym] = len(self.symbols)
        self.symbols.append(sym)
        self.counts.append(count)

    @classmethod
    def build(
        cls, lines: Iterable[str], threshold: int = 0, padding_factor: int = 8
    ) -> Dictionary:
        """Count whitespace tokens; keep those with count >= threshold, most frequent first."""
        counter: Counter[str] = Counter()
        for line in lines:
            counter.update(line.split())
        d = cls()
        for sym in cls.SPECIALS:
            counter.pop(sym, None)
        for sym, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            if count >= threshold:
                d._add(sym, count)
        i = 0
        while padding_factor > 1 and len(d) % padding_factor != 0:
            d._add(f"madeupword{i:04d}", 0)
            i += 1
        return d

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write fairseq's ``dict.txt`` format (``symbol count``, specials omitted)."""
        n = len(self.SPECIALS)
        write_lines(path, (f"{s} {c}" for s, c in zip(self.symbols[n:], self.counts[n:], strict=True)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dictionary:
        """Read a ``dict.txt`` written by :meth:`save` (or by fairseq)."""
        d = cls()
        for line in read_lines(path):
            sym, count = line.rsplit(" ", 1)
            d._add(sym, int(count))
        return d

    def index(self, sym: str) -> int:
        """Index of ``sym`` (``unk_index`` if unknown)."""
        return self._index.get(sym, self.unk_index)

    def encode_line(self, line: str) -> list[int]:
        """Token ids of a whitespace-tokenised line (no EOS)."""
        get, unk = self._index.get, self.unk_index
        return [get(tok, unk) for tok in line.split()]

    def string(self, ids: Iterable[int], bpe: bool = False) -> str:
        """Decode ids, stopping at EOS and skipping BOS/PAD; ``bpe=True`` also removes ``@@ ``."""
        toks = []
        for i in ids:
            i = int(i)
            if i == self.eos_index:
                break
            if i in (self.bos_index, self.pad_index):
                continue
            toks.append(self.symbols[i])
        s = " ".join(toks)
        return detok_bpe(s) if bpe else s


def _pack(seqs: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    offsets = torch.zeros(len(seqs) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    flat = torch.tensor([t for s in seqs for t in s], dtype=torch.int32)
    return flat, offsets


def binarize(
    out_dir: str | os.PathLike[str],
    *,
    threshold: int = 0,
    padding_factor: int = 8,
    splits: Sequence[str] = SPLITS,
) -> dict[str, Any]:
    """Build ``dict.txt`` from train.{de,en} and write ``{split}.pt`` for each split.

    Each ``.pt`` is a dict of ``src_tokens``/``tgt_tokens`` (flat int32, no EOS) and
    ``src_offsets``/``tgt_offsets`` (int64, length n+1) plus metadata; load it with
    :class:`TranslationPairs`. Writes ``binarize.json`` (summary, returned).
    """
    import torch

    d_out = Path(out_dir)
    text = {
        (split, lang): read_lines(d_out / f"{split}.{lang}") for split in splits for lang in LANGS
    }
    if "train" not in splits:
        text.update({("train", lang): read_lines(d_out / f"train.{lang}") for lang in LANGS})
    vocab = Dictionary.build(
        text[("train", SRC_LANG)] + text[("train", TGT_LANG)],
        threshold=threshold,
        padding_factor=padding_factor,
    )
    vocab.save(d_out / "dict.txt")
    dict_sha = sha256_file(d_out / "dict.txt")
    summary: dict[str, Any] = {"format": BIN_FORMAT, "dict_size": len(vocab),
                               "dict_sha256": dict_sha, "threshold": threshold,
                               "padding_factor": padding_factor, "splits": {}}
    for split in splits:
        obj: dict[str, Any] = {
            "format": BIN_FORMAT, "split": split, "src_lang": SRC_LANG, "tgt_lang": TGT_LANG,
            "bos": vocab.bos_index, "pad": vocab.pad_index, "eos": vocab.eos_index,
            "unk": vocab.unk_index, "dict_size": len(vocab), "dict_sha256": dict_sha,
        }
        info: dict[str, Any] = {}
        for side, lang in (("src", SRC_LANG), ("tgt", TGT_LANG)):
            ids = [vocab.encode_line(line) for line in text[(split, lang)]]
            flat, offsets = _pack(ids)
            obj[f"{side}_tokens"], obj[f"{side}_offsets"] = flat, offsets
            ntok = int(flat.numel())
            nunk = int((flat == vocab.unk_index).sum())
            info[lang] = {"sentences": len(ids), "tokens": ntok, "unk": nunk,
                          "unk_rate": nunk / ntok if ntok else 0.0}
        # saved through a file object: the archive's inner folder is then "archive", not the temporary
        # file's random name, so the same data gives the same bytes
        with atomic_path(d_out / f"{split}.pt") as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
        summary["splits"][split] = info
    write_json(d_out / "binarize.json", summary)
    return summary


class TranslationPairs:
    """A binarised split: ``ds[i]`` is ``(src_ids, tgt_ids)`` (int64 tensors, EOS appended)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import torch
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if obj.get("format") != BIN_FORMAT:
            raise ValueError(f"{path}: not a {BIN_FORMAT} file")
        self.meta = {k: v for k, v in obj.items() if not isinstance(v, torch.Tensor)}
        self.eos: int = int(obj["eos"])
        self.pad: int = int(obj["pad"])
        self._src, self._src_off = obj["src_tokens"], obj["src_offsets"]
        self._tgt, self._tgt_off = obj["tgt_tokens"], obj["tgt_offsets"]
        if self._src_off.numel() != self._tgt_off.numel():
            raise ValueError(f"{path}: src/tgt sentence counts differ")
        #: lengths including the appended EOS
        self.src_sizes: torch.Tensor = self._src_off[1:] - self._src_off[:-1] + 1
        self.tgt_sizes: torch.Tensor = self._tgt_off[1:] - self._tgt_off[:-1] + 1

    def __len__(self) -> int:
        return int(self._src_off.numel()) - 1

    def _get(self, flat: torch.Tensor, off: torch.Tensor, i: int) -> torch.Tensor:
        a, b = int(off[i]), int(off[i + 1])
        import torch
        out = torch.empty(b - a + 1, dtype=torch.int64)
        out[:-1] = flat[a:b]
        out[-1] = self.eos
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, i = len(self), int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self._get(self._src, self._src_off, i), self._get(self._tgt, self._tgt_off, i)


def load_split(out_dir: str | os.PathLike[str], split: str) -> TranslationPairs:
    """Load ``out_dir/{split}.pt`` written by :func:`binarize`."""
    return TranslationPairs(Path(out_dir) / f"{split}.pt")
