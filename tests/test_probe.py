"""Fig S7's probe of real architectures (sigprop.tasks.probe): the adapters on tiny configs, the c_proj std check
against GPT-2's rule and against #47458's init, the twin cross-check with sigprop.model and mutations it catches,
the command's table, and the message without the extra."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from sigprop.analysis import probe as analysis
from sigprop.analysis.registry import FIGURES
from sigprop.tasks import probe as spec

TINY = {"d_model": 32, "n_heads": 4, "d_ff": 64, "n_tokens": 12, "vocab": 97, "batch_size": 2, "batch_seed": 0,
        "image_size": 16, "patch_size": 4, "n_labels": 5}


def test_without_transformers_the_command_and_the_figure_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ModuleNotFoundError
    with pytest.raises(spec.MissingExtra, match=r'pip install -e "\.\[models\]"'):
        spec.require_transformers()
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name == "transformers" else object())
    fig = FIGURES["figS7"]
    assert not fig.installed
    assert 'figS7 needs pip install -e ".[models]"' in fig.install_hint
    assert all(f.installed for k, f in FIGURES.items() if k != "figS7")  # nothing else depends on the extra


tf = pytest.importorskip("transformers", reason='Fig S7 needs the optional extra: pip install -e ".[models]"')
from sigprop.tasks.probe import adapters  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _probe(model, n_layers, seeds=(0, 1), **over):
    df = adapters.probe({**TINY, "model": model, "n_layers": n_layers, **over}, list(seeds))
    return df.assign(model=model, n_layers=n_layers)


def test_the_version_pinned_is_the_one_installed():
    assert tf.__version__ == spec.TRANSFORMERS_PIN


@pytest.mark.parametrize("model", spec.MODELS)
def test_hooks_see_the_residual_stream_of_every_block(model):
    built = adapters.build({**TINY, "model": model, "arm": spec.ARMS[model][0], "n_layers": 3}, seed=0)
    hidden, grads, loss = adapters.forward_backward(built)
    assert len(hidden) == 4 and len(grads) == 3 and math.isfinite(loss)
    n = TINY["n_tokens"] if model != "vit" else (TINY["image_size"] // TINY["patch_size"]) ** 2 + 1
    assert all(h.shape == (TINY["batch_size"], n, TINY["d_model"]) for h in hidden)
    assert all(g.shape[-1] == TINY["d_model"] and float(g.norm()) > 0 for gs in grads for g in gs)
    if model == "gpt2":  # layer 0 is the embedding: token plus position
        ids = adapters._batch({**TINY, "model": "gpt2"})["input_ids"]
        emb = built.model.transformer.wte(ids) + built.model.transformer.wpe(torch.arange(ids.shape[1]))
        torch.testing.assert_close(hidden[0], emb.detach())


def test_the_probe_loss_is_the_library_loss():
    built = adapters.build({**TINY, "model": "gpt2", "arm": "built", "n_layers": 2}, seed=0)
    ids = adapters._batch({**TINY, "model": "gpt2"})["input_ids"]
    theirs = built.model(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(built.loss(), theirs)


def test_arms_are_paired_and_unscaled_is_built_times_sqrt_2L():
    p = {**TINY, "model": "gpt2", "n_layers": 3}
    a = dict(adapters.build({**p, "arm": "built"}, seed=5).model.named_parameters())
    b = dict(adapters.build({**p, "arm": "unscaled"}, seed=5).model.named_parameters())
    for name, w in a.items():
        factor = math.sqrt(6) if name.endswith("c_proj.weight") else 1.0
        torch.testing.assert_close(b[name], w * factor, msg=name)
    c = dict(adapters.build({**p, "arm": "built"}, seed=6).model.named_parameters())
    assert not torch.equal(c["transformer.h.0.attn.c_attn.weight"], a["transformer.h.0.attn.c_attn.weight"])


def test_the_std_check_passes_the_library_and_rejects_the_47458_init():
    raw = __import__("pandas").concat([_probe("gpt2", L, seeds=(0, 1, 2)) for L in (2, 6)], ignore_index=True)
    t = analysis.aggregate(raw)
    built, unscaled = analysis.std_checks(t)
    assert built.status == "passed", built
    assert unscaled.status == "passed", unscaled  # the check rejects c_proj drawn from N(0, 0.02^2)
    # the same rows relabelled: the unscaled model presented as GPT-2 "as built" fails the check
    swapped = t.assign(arm=t.arm.map({"built": "unscaled", "unscaled": "built"}).fillna(t.arm))
    assert analysis.std_checks(swapped)[0].status == "failed"
    # the std the library draws is GPT-2's rule: 0.02 / sqrt(2L)
    rel = t[(t.arm == "built") & (t.metric == "out_std_rel")]["mean"]
    assert np.allclose(rel, 1.0, atol=0.05)


@pytest.mark.parametrize("model", ["gpt2", "bert"])
def test_the_twin_reproduces_the_library_and_a_wrong_copy_is_caught(model):
    p = {**TINY, "model": model, "arm": "twin", "n_layers": 3}
    built = adapters.build(p, seed=0)
    hidden, grads, _ = adapters.forward_backward(built)
    devs = adapters.twin_deviations(built, p, hidden, grads)
    assert max(v for row in devs for v in row.values()) <= analysis.XCHECK_TOL

    def worst(mutate):
        b = adapters.build(p, seed=0)
        h, g, _ = adapters.forward_backward(b)
        stack = adapters.twin_stack(b, p)
        with torch.no_grad():
            mutate(stack)
        return max(v for row in adapters.twin_deviations(b, p, h, g, stack) for v in row.values())

    def swap_qk(stack):
        a = stack.blocks[1].attn
        a.wq.weight[:], a.wk.weight[:] = a.wk.weight.clone(), a.wq.weight.clone()

    def transpose_out(stack):
        stack.blocks[0].attn.wo.weight[:] = stack.blocks[0].attn.wo.weight.T.clone()

    def wrong_scale(stack):  # attention logits scaled by 2/sqrt(d_k)
        stack.blocks[2].attn.tau = 2.0

    for mutate in (swap_qk, transpose_out, wrong_scale):
        assert worst(mutate) > 1e-3, mutate.__name__


def test_checks_on_a_tiny_run():
    import pandas as pd

    raw = pd.concat([_probe(m, L, seeds=(0, 1, 2), twin_layers=[2]) for m in spec.MODELS for L in (2, 5)],
                    ignore_index=True)
    t = analysis.aggregate(raw)
    rows = {c.name.split(" (")[0]: c for c in analysis.checks(t)}
    assert rows["figS7 GPT-2 as built: per-block c_proj std = 0.02/sqrt(2L)"].status == "passed"
    twin = [c for c in rows.values() if "vs sigprop.model" in c.name]
    assert len(twin) == 2 and all(c.status == "passed" for c in twin)
    assert len(rows) == 8  # 2 std, 2 twin, 2 x 2 paired-arm claims
    # the summary table: one row per model, arm and depth
    table = adapters.summary_table(raw)
    assert len(table) == sum(len(a) - (a[-1] == "twin") for a in spec.ARMS.values()) * 2 + 2


def test_the_probe_command_prints_the_table(tmp_path, capsys):
    from sigprop import cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text("experiments:\n  model_probe:\n    fixed: " + str(TINY).replace("'", "") + "\n")
    cli.main(["probe", "--model", "llama", "--layers", "2,4", "--seeds", "2", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert "Llama" in out and "default std" in out and "o/down_proj / sqrt(2L)" in out
    assert len(out.strip().splitlines()) == 1 + 2 * 2  # header, 2 arms x 2 depths
    with pytest.raises(SystemExit, match="use one of gpt2, bert, llama, vit or all"):
        cli.main(["probe", "--model", "t5", "--config", str(cfg)])
