"""IWSLT'14 German-English data: download, fairseq-identical preprocessing, BPE, binarisation.

One module per step, each importing only the ones above it in this list:

* :mod:`~sigprop.data.iwslt.corpus`: the names: datasets, languages, splits, the official dev/test sets,
  fairseq's settings, where a local copy is named (config key, environment variable).
* :mod:`~sigprop.data.iwslt.textio`: text files read and written as the shell tools do; sha256.
* :mod:`~sigprop.data.iwslt.fetch`: find the raw files (local copy, earlier download, fairseq's archive).
* :mod:`~sigprop.data.iwslt.status`: whether a dataset's raw files are here, and the message when not (the
  workflow's ``iwslt_status`` checkpoint).
* :mod:`~sigprop.data.iwslt.moses` and :mod:`~sigprop.data.iwslt.bpe`: the Moses scripts and subword-nmt,
  including the inverses (detokenisation, BPE removal) that evaluation uses.
* :mod:`~sigprop.data.iwslt.preprocess`: fairseq's ``prepare-iwslt14.sh`` and :func:`prepare` (raw files ->
  BPE'd ``{train,valid,test}.{de,en}`` and ``manifest.json``).
* :mod:`~sigprop.data.iwslt.binarize`: the dictionary, the binary ``{split}.pt`` format and the dataset class
  training reads.
* from the command line: ``sigprop data-status``, ``data-prepare``, ``data-binarize``, ``data-locate``
  (:mod:`sigprop.cli`).

The datasets (``iwslt14``, the paper's, and the stand-in ``iwslt14-mini``) are described in docs/translation.md.
This file imports nothing, so a job that needs one step loads (and is rerun for edits to) that step alone.
"""
