"""IWSLT'14 De-En translation experiments (docs/translation.md): Figs 1, 6, 14 and Tables 1, 2.

* :mod:`.methods` - the named training methods of Table 1 -> model, optimiser, schedules.
* :mod:`.batching` - fairseq-style batches of at most ``max_tokens`` padded tokens.
* :mod:`.search` - greedy and beam search.
* :mod:`.bleu` - tokenised BLEU (as fairseq scores IWSLT) and detokenised sacreBLEU.
* :mod:`.probes` - per-layer measurements logged during training.
* :mod:`.job` - one training run (method, depth, seed) on the shared training loop.
* :mod:`.evaluation` - beam search and BLEU of a run's best checkpoint (a rule of its own).
* :mod:`.claims` - the paper's translation claims as checks (Table 1's order, Figs 1, 6, 14).
* :mod:`.plan` - which runs a config asks for (used by the workflow).
"""
