"""sigprop.tasks.translation.search: incremental decoding through the cache equals the full decoder, the
cache follows reordered rows, the position limit is named, beam search against greedy search."""

from __future__ import annotations

import pytest
import torch
from helpers import src_batch, tiny_model

from sigprop.tasks.translation.search import Decoding, SearchConfig, beam_search, greedy_search

pytestmark = pytest.mark.usefixtures("one_thread")


def _prefix(rows: int = 5, n: int = 7, seed: int = 5) -> torch.Tensor:
    prev = torch.randint(4, 40, (rows, n), generator=torch.Generator().manual_seed(seed))
    prev[:, 0] = 2
    return prev


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("norm", ["post", "pre", "none"])
def test_incremental_decoding_matches_full_decoder(norm, fast):
    """Token by token through the cache (as search decodes) and in chunks: the full decoder's logits."""
    model = tiny_model(norm, tau=2.0, fast=fast)  # the training fast path or the plain one, cached or not
    src, prev = src_batch(), _prefix()
    memory, mask, _ = model.encode(src)
    full, _ = model.decode(prev, memory, mask)
    steps = Decoding(model, memory, mask)
    inc = torch.stack([steps.step(prev[:, t]) for t in range(prev.shape[1])], dim=1)
    torch.testing.assert_close(inc, full, rtol=1e-5, atol=1e-5)
    assert steps.cache.length == prev.shape[1]
    cache, chunks = model.new_cache(), []  # several positions per call: causal among the new ones
    for lo, hi in ((0, 3), (3, 4), (4, 7)):
        chunks.append(model.decode(prev[:, lo:hi], memory, mask, cache=cache)[0])
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)


def test_reordered_cache_follows_its_rows_and_a_wrong_cache_changes_the_logits():
    """Beam search reorders the cache by hypothesis: reordered rows decode as the full decoder on the
    reordered prefixes; a cache left in the old order, or one from another prefix, gives other logits."""
    model = tiny_model("post", tau=2.0)
    src, prev = src_batch(), _prefix()
    memory, mask, _ = model.encode(src)
    rows = torch.tensor([3, 3, 0, 4, 1])  # a repeat and a dropped row, as when beams split and finish
    full, _ = model.decode(prev[rows], memory[rows], mask[rows], last_only=True)
    t = prev.shape[1] - 1

    def fed(prefix: torch.Tensor) -> Decoding:
        steps = Decoding(model, memory, mask)
        for i in range(t):
            steps.step(prefix[:, i])
        return steps

    steps = fed(prev)
    steps.reorder(rows)
    torch.testing.assert_close(steps.step(prev[rows, t]), full[:, 0], rtol=1e-5, atol=1e-5)
    stale = fed(prev)  # not reordered: keys and values of other hypotheses
    stale.memory, stale.memory_mask = memory[rows], mask[rows]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(stale.step(prev[rows, t]), full[:, 0], rtol=1e-5, atol=1e-5)
    other = prev.clone()
    other[:, 1] = (other[:, 1] - 4 + 1) % 36 + 4  # another token at position 1 in every row
    wrong = fed(other)
    wrong.reorder(rows)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(wrong.step(prev[rows, t]), full[:, 0], rtol=1e-5, atol=1e-5)


def test_decoding_past_max_positions_names_the_limit():
    model = tiny_model()
    memory, mask, _ = model.encode(src_batch())
    with pytest.raises(ValueError, match="max_positions"):
        model.decode(torch.full((5, model.cfg.max_positions + 1), 2), memory, mask)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed):
    model = tiny_model(seed=seed)
    cfg = SearchConfig(beam=1, max_len_b=15)
    assert beam_search(model, src_batch(seed), cfg) == greedy_search(model, src_batch(seed), cfg)


def test_beam_five_is_at_least_as_likely_as_greedy():
    model = tiny_model(seed=4)
    src = src_batch(4)
    cfg5 = SearchConfig(beam=5, max_len_b=12, lenpen=0.0)  # lenpen 0: raw log-probabilities

    def logprob(ids: list[int], i: int) -> float:
        prev = torch.tensor([[2, *ids]])
        tgt = torch.tensor([[*ids, 2]])
        logits, _ = model(src[i : i + 1], prev)
        return float(torch.log_softmax(logits, -1).gather(-1, tgt[..., None]).sum())

    beams, greedy = beam_search(model, src, cfg5), greedy_search(model, src, SearchConfig(beam=1, max_len_b=12))
    assert len(beams) == src.shape[0]
    with torch.no_grad():
        for i, (b, g) in enumerate(zip(beams, greedy, strict=True)):
            assert all(1 <= t < 40 and t not in (1, 2) for t in b)
            assert logprob(b, i) >= logprob(g, i) - 1e-4
