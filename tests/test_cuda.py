"""The training and decoding paths on a GPU (marker ``cuda``; skipped where CUDA is not available).

* the fast path (packed Q/K/V attention, fused read-out + loss) equals the plain path on the device: the loss
  and every gradient, in fp32 and under bf16 autocast, for the Table 1 architectures;
* beam search on the device returns the CPU fp32 decode of the same checkpoint;
* one update of every method of ``config/paper.yaml`` on the device (fused optimisers, bf16 autocast): finite
  loss and gradients, every trained parameter moves, the residual scales (alphas) train where the method says
  and keep their value elsewhere, and the inverse temperature tau follows its warm-up.

``SIGPROP_TEST_DEVICE=cpu`` runs the same tests on the CPU (``bench/gpu_check.sh --cpu-smoke`` does, to
prove they run before device time is spent); it is ``cuda`` by default.

Tolerances (stated before running on a GPU): fp32 with TF32 off: the losses agree to 1e-5 relative and every
gradient to 1e-4 relative (Frobenius norm of the difference over that of the plain gradient, or over 1e-4 x the
norm of all gradients where that is larger: gradients that vanish in exact arithmetic are rounding noise).
bf16 autocast (8-bit mantissa, ~4e-3 per rounding): the losses agree to 1e-2 relative,
and the fast path's gradient is as close to the plain fp32 gradient as the plain path's bf16 gradient is, up to
a factor 2 (or within 2e-2 relative).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import pytest
import torch

from sigprop.config import load_config
from sigprop.model import EncoderDecoder
from sigprop.tasks.translation import methods
from sigprop.tasks.translation.batching import collate
from sigprop.tasks.translation.search import SearchConfig, beam_search
from sigprop.tasks.translation.task import translation_step

DEVICE = os.environ.get("SIGPROP_TEST_DEVICE", "cuda")
REPO = Path(__file__).resolve().parents[1]
PAD, EOS, V = 1, 2, 512
LAYERS = 2
FP32_LOSS_RTOL, FP32_GRAD_RTOL, GRAD_FLOOR = 1e-5, 1e-4, 1e-4
BF16_LOSS_RTOL, BF16_GRAD_FACTOR, BF16_GRAD_RTOL = 1e-2, 2.0, 2e-2

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="CUDA is not available"),
]


@pytest.fixture(scope="module", autouse=True)
def exact_fp32():
    """fp32 means fp32: no TF32 matmuls or convolutions while these tests run."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture(scope="module")
def paper() -> dict:
    """The paper scale's methods, model (width cut to 64, no dropout: the fast path draws other masks) and
    optimisers."""
    cfg = load_config(REPO / "config" / "paper.yaml")
    tr = cfg["translation"]
    model = {**tr["model"], "d_model": 64, "n_heads": 4, "d_ff": 128, "dropout": 0.0, "attn_dropout": 0.0,
             "act_dropout": 0.0}
    return {"methods": cfg["methods"], "model": model, "optimizers": tr["optimizers"]}


def build(paper: dict, method: str, fast: bool, device: str = DEVICE, tau_update: int = 500) -> EncoderDecoder:
    """The method's model (seed 0) on the fast or the plain path, tau at update ``tau_update`` of its warm-up."""
    m = paper["methods"][method]
    cfg = dataclasses.replace(methods.model_config(paper["model"], m, LAYERS, V, PAD), fast=fast)
    model = EncoderDecoder(cfg, torch.Generator().manual_seed(0)).to(device)
    model.set_tau(methods.tau_at(tau_update, m))
    return model


def batch(device: str = DEVICE, seed: int = 0, n: int = 12) -> dict[str, torch.Tensor]:
    """Right-padded pairs of different lengths (3 to 30 tokens)."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        s, t = (int(x) for x in torch.randint(3, 31, (2,), generator=g))
        src, tgt = torch.randint(4, V, (s,), generator=g), torch.randint(4, V, (t,), generator=g)
        src[-1] = tgt[-1] = EOS
        pairs.append((src, tgt))
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(pairs, PAD, EOS).items()}


def loss_and_grads(model: EncoderDecoder, b: dict, fused: bool, bf16: bool) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    dev = torch.device(DEVICE).type
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
        loss = translation_step(model, b, eps=0.1, pad=PAD, fused=fused)["loss"]
    loss.backward()
    grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def rel_errors(a: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per parameter, ||a - ref|| / max(||ref||, GRAD_FLOOR x the norm of all of ref's gradients): a gradient that
    vanishes in exact arithmetic (the key biases': softmax ignores a shift) is rounding noise in both paths."""
    floor = GRAD_FLOOR * float(torch.stack([g.norm() for g in ref.values()]).norm())
    return {n: float((a[n] - ref[n]).norm()) / max(float(ref[n].norm()), floor) for n in ref}


@pytest.mark.parametrize("method", ["adam_postln", "adam_preln", "sgd_temperature", "rezero", "tfixup"])
def test_fast_path_equals_plain_path_fp32(paper, method):
    b = batch()
    plain_loss, plain = loss_and_grads(build(paper, method, fast=False), b, fused=False, bf16=False)
    fast_loss, fast = loss_and_grads(build(paper, method, fast=True), b, fused=True, bf16=False)
    assert math.isfinite(plain_loss) and plain.keys() == fast.keys() and plain
    assert fast_loss == pytest.approx(plain_loss, rel=FP32_LOSS_RTOL)
    errors = rel_errors(fast, plain)
    assert max(errors.values()) <= FP32_GRAD_RTOL, sorted(errors.items(), key=lambda kv: -kv[1])[:5]


@pytest.mark.parametrize("method", ["adam_postln", "adam_preln", "sgd_temperature", "rezero", "tfixup"])
def test_fast_path_equals_plain_path_bf16_autocast(paper, method):
    b = batch()
    ref_loss, ref = loss_and_grads(build(paper, method, fast=False), b, fused=False, bf16=False)
    plain_loss, plain = loss_and_grads(build(paper, method, fast=False), b, fused=False, bf16=True)
    fast_loss, fast = loss_and_grads(build(paper, method, fast=True), b, fused=True, bf16=True)
    assert math.isfinite(fast_loss) and fast.keys() == ref.keys()
    assert fast_loss == pytest.approx(plain_loss, rel=BF16_LOSS_RTOL)
    assert fast_loss == pytest.approx(ref_loss, rel=BF16_LOSS_RTOL)
    err_fast, err_plain = rel_errors(fast, ref), rel_errors(plain, ref)
    bad = {n: (err_fast[n], err_plain[n]) for n in ref if err_fast[n] > max(BF16_GRAD_FACTOR * err_plain[n],
                                                                             BF16_GRAD_RTOL)}
    assert not bad, bad


def test_bf16_check_fails_on_a_wrong_gradient(paper):
    """The bf16 comparison can fail: a gradient scaled by 1.1 is outside its tolerance."""
    b = batch()
    _, ref = loss_and_grads(build(paper, "adam_postln", fast=False), b, fused=False, bf16=False)
    _, plain = loss_and_grads(build(paper, "adam_postln", fast=False), b, fused=False, bf16=True)
    name = "embed.weight"
    wrong = {**ref, name: 1.1 * ref[name]}
    assert rel_errors(wrong, ref)[name] > max(BF16_GRAD_FACTOR * rel_errors(plain, ref)[name], BF16_GRAD_RTOL)


def score(model: EncoderDecoder, src: torch.Tensor, hyp: list[int], lenpen: float = 1.0) -> float:
    """Length-normalised log-probability of ``hyp`` + EOS given one source row (beam search's score)."""
    tgt = torch.tensor([*hyp, EOS], device=src.device)
    prev = torch.tensor([EOS, *hyp], device=src.device)
    with torch.no_grad():
        logits, _ = model(src[None], prev[None])
    lp = torch.log_softmax(logits[0].float(), -1).gather(1, tgt[:, None]).sum()
    return float(lp) / len(tgt) ** lenpen


def test_beam_search_on_device_equals_cpu_fp32_decode(paper, tmp_path):
    trained = build(paper, "adam_postln", fast=True, device="cpu")
    # a few updates on a copy task, so that the decode is not a flat random model's
    opt = methods.build_optimizer(trained.parameters(), {**paper["optimizers"]["adam"], "lr": 3e-3}, "cpu")
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        seqs = [torch.cat([torch.randint(4, 40, (int(torch.randint(3, 12, (1,), generator=g)),), generator=g),
                           torch.tensor([EOS])]) for _ in range(16)]
        b = collate([(s, s.clone()) for s in seqs], PAD, EOS)
        trained.train()
        translation_step(trained, b, eps=0.1, pad=PAD)["loss"].backward()
        opt.step()
        opt.zero_grad()
    path = tmp_path / "checkpoint.pt"
    torch.save(trained.state_dict(), path)
    cpu_model, dev_model = build(paper, "adam_postln", True, "cpu"), build(paper, "adam_postln", True)
    cpu_model.load_state_dict(torch.load(path, map_location="cpu"))
    dev_model.load_state_dict(torch.load(path, map_location=DEVICE))
    src = batch("cpu", seed=2, n=24)["src"]
    cfg = SearchConfig(beam=5, lenpen=1.0, max_len_a=1.2, max_len_b=10, eos=EOS)
    on_cpu = beam_search(cpu_model, src, cfg)
    on_dev = beam_search(dev_model, src.to(DEVICE), cfg)
    same = sum(a == b for a, b in zip(on_cpu, on_dev, strict=True))
    assert same >= 0.75 * len(on_cpu), f"{same}/{len(on_cpu)} hypotheses equal"
    for i, (a, b) in enumerate(zip(on_cpu, on_dev, strict=True)):
        if a != b:  # a near-tie between beams: both hypotheses score the same under the CPU model
            assert score(cpu_model, src[i], b) == pytest.approx(score(cpu_model, src[i], a), abs=1e-3), i


def alpha_values(model: EncoderDecoder) -> torch.Tensor:
    return torch.tensor([a for stack in model.alphas().values() for pair in stack for a in pair])


@pytest.mark.parametrize("method", ["sgd_postln", "sgd_resscale", "sgd_temperature", "adam_postln", "adam_preln",
                                    "rezero", "tfixup", "adam_postln_scaled"])
def test_one_update_of_each_method(paper, method):
    m = paper["methods"][method]
    model = build(paper, method, fast=True, tau_update=1)
    opt_cfg = paper["optimizers"][m["optimizer"]]
    opt = methods.build_optimizer(model.parameters(), opt_cfg, DEVICE)  # fused kernels
    assert opt.defaults.get("fused") or opt_cfg["kind"] == "radam"
    taus = {float(a.tau) for a in model.modules() if hasattr(a, "tau")}
    assert taus == {methods.tau_at(1, m)}
    warmup = int(m.get("tau_warmup", 0))  # tau_t = tau * min(1, t / warmup): at t = 1, tau / warmup
    assert taus == {float(m.get("tau", 1.0)) / warmup if warmup else float(m.get("tau", 1.0))}
    alpha0 = alpha_values(model)
    expected = float(m["alpha"]) if not isinstance(m["alpha"], str) else LAYERS**-0.5
    torch.testing.assert_close(alpha0, torch.full_like(alpha0, expected))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss, grads = loss_and_grads(model, batch(), fused=True, bf16=True)
    assert math.isfinite(loss) and loss > 0
    assert all(torch.isfinite(g).all() for g in grads.values())
    for group in opt.param_groups:
        group["lr"] = float(opt_cfg["lr"])  # the peak learning rate
    opt.step()
    moved = {n: bool((p.detach() != before[n]).any()) for n, p in model.named_parameters()}
    still = [n for n, g in grads.items() if g.abs().max() > 0 and not moved[n]]
    assert not still, still
    alpha1 = alpha_values(model)
    trainable = [n for n, p in model.named_parameters() if "alpha" in n]
    if m.get("trainable_alpha"):
        assert trainable and not torch.equal(alpha1, alpha0)
    else:
        assert not trainable and torch.equal(alpha1, alpha0)
