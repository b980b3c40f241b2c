"""Tables 1 and 2 of the paper as CSV (data), LaTeX (booktabs) and PNG (for reading), in results/tables/.

Table 1: test BLEU of the seven methods at 6+6 blocks (or the config's depth), ours beside the
paper's, naming the dataset ours was trained on. Table 2: the hyper-parameters, rendered from the
config actually used, beside the paper's Table 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sigprop.analysis import aggregate
from sigprop.io import atomic_path, provenance, read_tables, write_table

#: the paper's Table 2, keyed like :func:`table2_rows`
PAPER_TABLE2 = {
    ("General", "Max tokens"): "4096",
    ("General", "Label smoothing"): "0.1",
    ("General", "Clip norm"): "0",
    ("General", "General dropout"): "0.3",
    ("General", "Attention dropout"): "0.1",
    ("General", "ReLU dropout"): "0.1",
    ("General", "Hidden size"): "512",
    ("General", "FFN inner hidden size"): "2048",
    ("General", "Attention heads"): "4",
    ("Adam", "Learning rate"): "7e-04",
    ("Adam", "Learning rate scheduler"): "inverse sqrt",
    ("Adam", "Warm-up updates"): "6000",
    ("Adam", "Warm-up init learning rate"): "1e-07",
    ("Adam", "Adam (beta1, beta2)"): "(0.9, 0.98)",
    ("Adam", "Training updates"): "100000",
    ("Adam", "Weight decay"): "1e-04",
    ("SGD", "Learning rate"): "2e-02",
    ("SGD", "Learning rate scheduler"): "step",
    ("SGD", "Step scheduler gamma"): "0.1",
    ("SGD", "Step scheduler update steps"): "[100000, 200000]",
    ("SGD", "Training updates"): "250000",
    ("SGD", "Weight decay"): "1e-03",
    ("Temperature", "Final inverse temperature"): "8.5",
    ("Temperature", "Warm-up steps"): "1000",
}


def _num(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.0e}" if (x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e5)) else f"{x:g}"
    return str(x)


def _fmt_lr(x: float) -> str:
    return f"{x:.0e}" if x < 1e-1 else f"{x:g}"


def table2_rows(cfg: Mapping[str, Any]) -> list[dict[str, str]]:
    """(section, hyper-parameter, ours, paper) rows from a config's ``translation`` and ``methods``."""
    tr = cfg["translation"]
    model, train, opts, methods = tr["model"], tr["training"], tr["optimizers"], cfg["methods"]
    rows: list[tuple[str, str, str]] = [
        ("General", "Dataset", tr["dataset"]),
        ("General", "Max tokens", _num(train["max_tokens"])),
        ("General", "Label smoothing", _num(train["label_smoothing"])),
        ("General", "Clip norm", _num(float(train["clip_norm"]))),
        ("General", "General dropout", _num(model["dropout"])),
        ("General", "Attention dropout", _num(model["attn_dropout"])),
        ("General", "ReLU dropout", _num(model["act_dropout"])),
        ("General", "Hidden size", _num(model["d_model"])),
        ("General", "FFN inner hidden size", _num(model["d_ff"])),
        ("General", "Attention heads", _num(model["n_heads"])),
    ]
    section = {"adam": "Adam", "sgd": "SGD", "radam": "RAdam"}
    for name, opt in opts.items():
        users = [m["label"] for m in methods.values() if m["optimizer"] == name]
        sec = section.get(name, f"{section[opt['kind']]} ({', '.join(users) or name})")
        sched = opt["schedule"]
        lr = opt["lr"]
        if isinstance(lr, list) and len(lr) > 1:  # a grid: each method's lr is selected (Fig S8)
            lr_text = "grid {" + ", ".join(_fmt_lr(float(x)) for x in lr) + "}, selected per method (Fig S8)"
        else:
            lr_text = _fmt_lr(float(lr[0] if isinstance(lr, list) else lr))
        rows.append((sec, "Learning rate", lr_text))
        rows.append((sec, "Learning rate scheduler", sched["kind"].replace("_", " ")))
        if sched["kind"] == "inverse_sqrt":
            rows.append((sec, "Warm-up updates", _num(int(sched["warmup_updates"]))))
            rows.append((sec, "Warm-up init learning rate", _fmt_lr(float(sched["warmup_init_lr"]))))
        if sched["kind"] == "inverse_sqrt_nowarmup":
            rows.append((sec, "Decay period", _num(sched["decay_period"])))
        if sched["kind"] == "step":
            rows.append((sec, "Step scheduler gamma", _num(float(sched["gamma"]))))
            marks = [round(f * int(opt["updates"])) for f in sched["milestones"]]
            rows.append((sec, "Step scheduler update steps", str(marks)))
        if opt["kind"] in ("adam", "radam"):
            b1, b2 = opt["betas"]
            rows.append((sec, "Adam (beta1, beta2)", f"({_num(float(b1))}, {_num(float(b2))})"))
        else:
            rows.append((sec, "Momentum", _num(float(opt["momentum"]))))
        rows.append((sec, "Training updates", _num(int(opt["updates"]))))
        rows.append((sec, "Weight decay", _fmt_lr(float(opt["weight_decay"]))))
    temp = [m for m in methods.values() if float(m["tau"]) != 1.0]
    if temp:
        rows.append(("Temperature", "Final inverse temperature", _num(float(temp[0]["tau"]))))
        rows.append(("Temperature", "Warm-up steps", _num(int(temp[0]["tau_warmup"]))))
    return [{"section": s, "hyperparameter": h, "ours": v, "paper": PAPER_TABLE2.get((s, h), "")} for s, h, v in rows]


def _tex_escape(s: str) -> str:
    """The caption's LaTeX escapes (the cells and headers are escaped by pandas)."""
    return (
        str(s)
        .replace("\\", r"\textbackslash{}")
        .replace("_", r"\_")
        .replace("%", r"\%")
        .replace("&", r"\&")
        .replace("#", r"\#")
    )


def to_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (pandas ``Styler.to_latex``; cells and headers LaTeX-escaped, no index)."""
    styler = df.astype(str).style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(
        hrules=True,
        caption=_tex_escape(caption),
        label=label,
        position="t",
        position_float="centering",
        column_format="l" * df.shape[1],
    )


def to_png(df: pd.DataFrame, title: str, path: str | Path, style: Mapping[str, Any], note: str = "") -> None:
    """Render a table as an image (for the report and a quick look)."""
    from sigprop.plotting.style import Style

    st = Style.from_config(style)
    st.apply()
    import matplotlib.pyplot as plt

    n = len(df) + 1
    chars = [max(1.15 * len(str(c)), *(len(str(v)) for v in df[c])) + 3 for c in df.columns]  # header is bold
    width = sum(chars) * st.font_size * 0.7 / 72  # ~0.7 em per character of DejaVu Sans
    fig, ax = plt.subplots(figsize=(max(width, 4.0), 0.2 * n + 0.4))
    ax.axis("off")
    tab = ax.table(
        cellText=df.astype(str).values,
        colLabels=list(df.columns),
        cellLoc="left",
        colLoc="left",
        colWidths=[c / sum(chars) for c in chars],
        bbox=[0, 0, 1, 1],
    )
    tab.auto_set_font_size(False)
    tab.set_fontsize(st.font_size)
    for (r, _), cell in tab.get_celld().items():
        cell.set_linewidth(0.3)
        if r == 0:
            cell.set_text_props(weight="bold")
    ax.set_title(title, fontsize=st.font_size + 1, loc="left")
    if note:
        ax.text(0, -0.03, note, fontsize=st.font_size - 1, ha="left", va="top", wrap=True, transform=ax.transAxes)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=st.dpi, format="png", bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _ci(row: Mapping[str, Any]) -> str:
    m = row["mean"]
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "diverged" if row["n_diverged"] else "n/a"
    half = (row["ci_high"] - row["ci_low"]) / 2 if not math.isnan(row["ci_high"]) else math.nan
    return f"{m:.2f}" + ("" if math.isnan(half) else f" ± {half:.2f}")


def table1_display(t: pd.DataFrame) -> pd.DataFrame:
    """The human-readable Table 1."""
    return pd.DataFrame(
        {
            "Method": t.method_label,
            "Blocks": t.layers.astype(str) + "+" + t.layers.astype(str),
            "BLEU (ours)": [_ci(r) for r in t.to_dict("records")],
            "runs (diverged)": [f"{int(r.n_runs)} ({int(r.n_diverged)})" for r in t.itertuples()],
            "detok. sacreBLEU": [("-" if math.isnan(x) else f"{x:.2f}") for x in t.sacrebleu_detok],
            **({"lr": [_fmt_lr(x) for x in t.lr]} if "lr" in t else {}),
            **({"valid. loss at update 0": [("-" if math.isnan(x) else f"{x:.3f}") for x in t.valid_loss_init]}
               if "valid_loss_init" in t else {}),
            "valid. loss (best)": [("-" if math.isnan(x) else f"{x:.3f}") for x in t.valid_loss],
            "BLEU (paper)": [("-" if pd.isna(x) else f"{x:.2f}") for x in t.paper_bleu],
        }
    )


def write_table1(
    evals: Sequence[str], aggregated: str | Path, out_dir: str | Path, style: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Aggregate the runs' eval tables into Table 1 and write parquet, csv, tex and png."""
    raw = read_tables(list(evals))
    t = aggregate.table1(raw)
    write_table(t, aggregated, provenance(figure="table1", inputs=len(evals)))
    out = Path(out_dir)
    dataset = ", ".join(sorted(set(t.dataset)))
    with atomic_path(out / "table1_bleu.csv") as tmp:
        t.drop(columns=["seeds", "seed_values"], errors="ignore").to_csv(tmp, index=False)  # per-seed: parquet
    disp = table1_display(t)
    sents = int(t.test_sentences.max()) if len(t) else 0
    how = (
        f"ours: trained on {dataset}, tokenised BLEU (fairseq's IWSLT scoring), beam {int(t.beam.max())}, "
        f"{sents} test sentences, mean ± 95% CI over runs that did not diverge"
    )
    if dataset != "iwslt14":
        how += f". {dataset} is a stand-in, NOT the paper's training data: not comparable to the paper's column"
    _write_text(
        out / "table1_bleu.tex",
        to_latex(
            disp, f"Test BLEU on IWSLT'14 De-En ({how}). Paper: mean of 5 runs, 6+6 blocks.", "tab:translation_results"
        ),
    )
    to_png(
        disp,
        f"Table 1: test BLEU, IWSLT'14 De-En - ours trained on {dataset}",
        out / "table1_bleu.png",
        style or {},
        note=how + ".",
    )
    return t


def write_table2(cfg: Mapping[str, Any], out_dir: str | Path, style: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Table 2 from the config actually used (``cfg``: name, methods, translation), csv, tex and png."""
    rows = pd.DataFrame(table2_rows(cfg))
    out = Path(out_dir)
    with atomic_path(out / "table2_hyperparameters.csv") as tmp:
        rows.to_csv(tmp, index=False)
    disp = rows.rename(
        columns={
            "section": "",
            "hyperparameter": "Hyperparameter",
            "ours": f"Ours (config {cfg['name']})",
            "paper": "Paper",
        }
    )
    dataset = cfg["translation"]["dataset"]
    _write_text(
        out / "table2_hyperparameters.tex",
        to_latex(
            disp,
            f"Hyperparameters for IWSLT'14 De-En: config '{cfg['name']}' (dataset {dataset}) "
            "beside the paper's Table 2.",
            "tab:hyperparameters",
        ),
    )
    to_png(
        disp,
        f"Table 2: hyperparameters, config '{cfg['name']}' (dataset {dataset}) vs paper",
        out / "table2_hyperparameters.png",
        style or {},
    )
    return rows
