"""Learning-rate selection by successive halving, on the validation loss only (docs/translation.md).

An optimiser of ``translation.optimizers`` may give ``lr`` as a grid (a list). Every method that uses it is then
selected once, at Table 1's depth (``translation.table1.layers``), by the rule of ``translation.selection``:

1. seed 0 of every grid point trains ``fraction`` of the optimiser's updates (``select_update``) and is
   validated there (rule ``train_lr_point``: ``results/raw/translation_select/<dataset>/<method>/layers~<X>/
   lr~<lr>/``, ``prefix.json`` and its resumable ``last.pt``);
2. the point with the lowest validation loss wins; points within ``tie_tolerance`` of it are tied and
   ``ties`` picks the smaller (or larger) lr among them; a diverged point never wins;
3. if the winner is at an edge of the grid and ``extend_edge`` is set, one point beyond that edge (one geometric
   step of the grid: ``edge**2 / neighbour``) trains the same prefix, and the rule is applied once more to all
   the points; there is no second extension (rule ``select_lr``: ``selection.json``);
4. the winner continues from its checkpoint to the full horizon (that run is the method's seed-0 run at Table
   1's depth: bit for bit the run trained straight through at that lr), and every other run of the method
   (other seeds, Figs 1, 6, 14 at every depth) trains at the selected lr.

A method may name another's selection (``lr_from``, same optimiser: Fig 1's scaled POST-LN trains at Adam
POST-LN's lr). A grid of one point is a single lr: no selection, today's run. The selection update is validated
in every run of a method with a grid (so that the continued run and a straight run validate at the same updates).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the selection's outputs, per method at Table 1's depth
SELECT_DIR = "results/raw/translation_select/{dataset}/{method}/layers~{layers}"
#: one grid point's prefix run, under SELECT_DIR
POINT_DIR = SELECT_DIR + "/lr~{lr}"
SELECTION_FILE = SELECT_DIR + "/selection.json"
#: the same as a table, one row per grid point (Fig S8's raw table)
SELECTION_TABLE = SELECT_DIR + "/selection.parquet"
PREFIX_SUMMARY = "prefix.json"
PREFIX_STATE = "last.pt"


def lr_grid(opt: Mapping[str, Any]) -> list[float]:
    """An optimiser's lr as a list (one point for a single lr)."""
    lr = opt["lr"]
    return [float(x) for x in lr] if isinstance(lr, list | tuple) else [float(lr)]


def has_grid(opt: Mapping[str, Any]) -> bool:
    """Whether the optimiser's lr is a grid of more than one point (selected), not a single lr."""
    return len(lr_grid(opt)) > 1


def lr_name(lr: float) -> str:
    """The lr in file names and wildcards (``0.002``, ``0.05``): ``float(lr_name(x)) == x``."""
    return f"{float(lr):.12g}"


def select_update(opt: Mapping[str, Any], rule: Mapping[str, Any]) -> int:
    """The update at which the grid points are compared: ``round(fraction * updates)``, at least 1."""
    return max(1, round(float(rule["fraction"]) * int(opt["updates"])))


def method_optimizer(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The optimiser config of a method."""
    return dict(config["translation"]["optimizers"][config["methods"][method]["optimizer"]])


def lr_source(config: Mapping[str, Any], method: str) -> str:
    """The method whose selection a method trains at: its ``lr_from`` (same optimiser), else itself."""
    return str(config["methods"][method].get("lr_from", method))


def selected_methods(config: Mapping[str, Any], methods: Sequence[str]) -> list[str]:
    """The methods selected for ``methods`` (their ``lr_from``, else themselves) whose optimiser has an lr grid."""
    return sorted({lr_source(config, m) for m in methods if has_grid(method_optimizer(config, m))})


def selection_layers(config: Mapping[str, Any]) -> int:
    """The depth every method is selected at: Table 1's (one depth; Figs 1, 6, 14 reuse the selected lr)."""
    tr = config["translation"]
    if "table1" not in tr:
        raise ValueError("an lr grid is selected at Table 1's depth: add translation.table1 to the config")
    layers = tr["table1"]["layers"]
    if isinstance(layers, list):
        if len(layers) != 1:
            raise ValueError(f"translation.table1.layers = {layers}: lr selection needs one depth in Table 1")
        layers = layers[0]
    return int(layers)


def selection_file(config: Mapping[str, Any], dataset: str, method: str) -> str:
    """Where the selection of ``method`` is written."""
    return SELECTION_FILE.format(dataset=dataset, method=method, layers=selection_layers(config))


def point_files(config: Mapping[str, Any], dataset: str, method: str) -> list[str]:
    """The prefix summaries of a method's grid points (the inputs of its selection)."""
    layers = selection_layers(config)
    return [
        POINT_DIR.format(dataset=dataset, method=method, layers=layers, lr=lr_name(lr)) + "/" + PREFIX_SUMMARY
        for lr in lr_grid(method_optimizer(config, method))
    ]


def resolve_spec(spec: Mapping[str, Any], lr: float | None) -> dict[str, Any]:
    """A run spec with one lr: a grid's point ``lr``, or the single lr of a grid of one (``lr`` None)."""
    out = json.loads(json.dumps(spec))
    grid = lr_grid(out["optimizer"])
    if lr is None:
        if len(grid) > 1:
            raise ValueError(f"method {spec['method']}: the optimiser's lr is a grid {grid}; its runs need the "
                             "selected lr (rule select_lr: pass --selection results/.../selection.json)")
        lr = grid[0]
    out["optimizer"]["lr"] = float(lr)
    return out


# ---------------------------------------------------------------------------------------------- the rule


@dataclass
class Decision:
    """The outcome of one application of the selection rule."""

    winner: float
    tied: list[float]  # the points within tie_tolerance of the best (the winner among them)
    at_edge: str | None  # "low" / "high": the winner is the grid's smallest / largest point
    extension: float | None  # the point beyond the edge to try (None: none)
    reason: str
    losses: dict[float, float] = field(default_factory=dict)


def extension_point(grid: Sequence[float], side: str) -> float:
    """One geometric step of the grid beyond its ``low`` or ``high`` edge (``edge**2 / neighbour``)."""
    pts = sorted(grid)
    if len(pts) < 2:
        raise ValueError("an edge extension needs a grid of at least two points")
    edge, neighbour = (pts[0], pts[1]) if side == "low" else (pts[-1], pts[-2])
    return float(lr_name(edge * edge / neighbour))


def decide(losses: Mapping[float, float], rule: Mapping[str, Any], extended: bool = False) -> Decision:
    """Apply the rule to ``{lr: validation loss at the selection update}`` (NaN or inf: diverged).

    ``extended``: the grid was already extended once, so no further extension is proposed.
    """
    finite = {float(lr): float(v) for lr, v in losses.items() if math.isfinite(float(v))}
    if not finite:
        raise ValueError(f"every grid point diverged ({sorted(losses)}): no lr to select; lower the grid")
    best = min(finite.values())
    tol = float(rule["tie_tolerance"])
    tied = sorted(lr for lr, v in finite.items() if v <= best + tol)
    winner = tied[0] if rule["ties"] == "smaller_lr" else tied[-1]
    pts = sorted(float(x) for x in losses)
    at_edge = "low" if winner == pts[0] else "high" if winner == pts[-1] else None
    extension = None
    if at_edge and rule["extend_edge"] and not extended and len(pts) >= 2:
        extension = extension_point(pts, at_edge)
    reason = f"lowest validation loss {finite[winner]:.4f}"
    if len(tied) > 1:
        reason += f" (tied within {tol:g} with {', '.join(lr_name(x) for x in tied if x != winner)}: {rule['ties']})"
    if extension is not None:
        reason += f"; at the {at_edge} edge: one point beyond, lr {lr_name(extension)}"
    elif at_edge and extended:
        reason += f"; at the {at_edge} edge after the one extension allowed"
    elif at_edge:
        reason += f"; at the {at_edge} edge (no extension)"
    return Decision(winner, tied, at_edge, extension, reason, dict(finite))


def read_point(path: str | Path) -> tuple[float, float]:
    """``(lr, validation loss at the selection update)`` of a prefix summary (inf if it diverged)."""
    s = json.loads(Path(path).read_text())["summary"]
    loss = s.get("select_valid_loss")
    return float(s["lr"]), (math.inf if s["diverged"] or loss is None else float(loss))


def select(
    spec: Mapping[str, Any],
    point_paths: Sequence[str | Path],
    data_dir: str | Path,
    out_file: str | Path,
    train_prefix: Callable[[Mapping[str, Any], str | Path, Path, float], Any],
) -> dict[str, Any]:
    """The ``select_lr`` job: decide from the prefix runs, train the one edge extension if the rule asks (with
    ``train_prefix(spec, data_dir, out_dir, lr)``, :func:`sigprop.tasks.translation.job.train_prefix`: passed in,
    so that this module does not import the training job that imports it), decide again, and write
    ``selection.json`` (every point, the winner, its checkpoint, the rule and the reason)."""
    from sigprop.io import atomic_path, provenance, write_table

    rule = spec["selection"]
    dirs = {}
    losses = {}
    for path in point_paths:
        lr, loss = read_point(path)
        losses[lr], dirs[lr] = loss, Path(path).parent
    first = decide(losses, rule)
    decision, extension = first, None
    if first.extension is not None:
        extension = first.extension
        ext_dir = Path(out_file).parent / f"lr~{lr_name(extension)}"
        train_prefix(spec, data_dir, ext_dir, extension)
        lr, loss = read_point(ext_dir / PREFIX_SUMMARY)
        losses[lr], dirs[lr] = loss, ext_dir
        decision = decide(losses, rule, extended=True)
    points = [{"lr": lr, "valid_loss": losses[lr], "diverged": not math.isfinite(losses[lr]),
               "extension": lr == extension, "winner": lr == decision.winner} for lr in sorted(losses)]
    out = {
        "dataset": spec["dataset"],
        "method": spec["method"],
        "method_label": spec["method_config"].get("label", spec["method"]),
        "optimizer": spec["optimizer"]["name"],
        "layers": int(spec["layers"]),
        "select_update": select_update(spec["optimizer"], rule),
        "updates": int(spec["optimizer"]["updates"]),
        "grid": lr_grid(spec["optimizer"]),
        "rule": dict(rule),
        "points": points,
        "lr": decision.winner,
        "first_winner": first.winner,
        "extension": extension,
        "reason": decision.reason if extension is None else f"{first.reason}. Then: {decision.reason}",
        "checkpoint": str(dirs[decision.winner] / PREFIX_STATE),
    }
    with atomic_path(Path(out_file)) as tmp:
        tmp.write_text(json.dumps(out, indent=2) + "\n")
    write_table(selection_rows(out), Path(out_file).with_suffix(".parquet"), provenance(config=spec.get("config")))
    return out


def selection_rows(sel: Mapping[str, Any]) -> Any:
    """A selection as a tidy table (a DataFrame): one row per grid point (lr, loss, winner, extension), the rule."""
    import pandas as pd  # here: the Snakefile imports this module

    keys = {k: sel[k] for k in ("dataset", "method", "method_label", "optimizer", "layers", "select_update",
                                "updates")}
    rule = {f"rule_{k}": v for k, v in sel["rule"].items()}
    rows = [{**keys, **p, "selected_lr": sel["lr"], "reason": sel["reason"], **rule} for p in sel["points"]]
    return pd.DataFrame(rows)


def read_selection(path: str | Path, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A ``selection.json``, checked to belong to the run's method and dataset."""
    sel = json.loads(Path(path).read_text())
    source = spec["method_config"].get("lr_from", spec["method"])
    if sel["method"] != source or sel["dataset"] != spec["dataset"]:
        raise ValueError(f"{path} selects {sel['method']} on {sel['dataset']}, not {spec['method']} on "
                         f"{spec['dataset']}")
    return sel


def continues_selection(selection: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """Whether this run is the winner's continuation (seed 0 at the selection's depth)."""
    return (selection["method"] == spec["method"] and int(spec["seed"]) == 0
            and int(spec["layers"]) == int(selection["layers"]))
