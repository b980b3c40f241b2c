"""The one plotting style every figure shares, and the atomic PDF + PNG writer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sigprop.io import atomic_path  # noqa: E402
from sigprop.params import RESIDUAL_SCALES  # noqa: E402

THEORY = {"ls": "--", "lw": 1.0}
#: the residual scales' labels (defined in :data:`sigprop.params.RESIDUAL_SCALES`)
ALPHA_LABELS = RESIDUAL_SCALES


@dataclass(frozen=True)
class Style:
    """Sizes for a figure that is printed at the paper's text width (NeurIPS: 5.5 in)."""

    column_width_in: float = 5.5
    font_size: float = 8.0
    dpi: int = 200
    palette: str = "colorblind"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Style:
        """Build from the config's ``style`` section."""
        return cls(**(cfg or {}))

    def apply(self) -> None:
        """Set the seaborn theme and font sizes."""
        sns.set_theme(
            context="paper",
            style="whitegrid",
            palette=self.palette,
            rc={
                "font.size": self.font_size,
                "axes.labelsize": self.font_size,
                "axes.titlesize": self.font_size,
                "legend.fontsize": self.font_size - 1,
                "xtick.labelsize": self.font_size - 1,
                "ytick.labelsize": self.font_size - 1,
                "lines.linewidth": 1.2,
                "axes.linewidth": 0.6,
                "grid.linewidth": 0.4,
                "legend.frameon": False,
                "pdf.fonttype": 42,
            },
        )

    def figure(self, nrows: int = 1, ncols: int = 1, height_ratio: float = 0.8, **kw: Any) -> tuple[Figure, Any]:
        """A figure at text width; each panel ``height_ratio`` times as tall as it is wide."""
        self.apply()
        width = self.column_width_in
        height = width / ncols * height_ratio * nrows
        return plt.subplots(nrows, ncols, figsize=(width, height), constrained_layout=True, **kw)

    def colors(self, n: int) -> list:
        """``n`` colours from the palette."""
        return sns.color_palette(self.palette, n)


def band(ax: Axes, x: Any, mean: Any, lo: Any, hi: Any, color: Any, label: str | None = None, **kw: Any) -> None:
    """A mean line with its 95% interval as a shaded band."""
    ax.plot(x, mean, color=color, label=label, **kw)
    if not np.all(np.isnan(np.asarray(lo, dtype=float))):
        ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0)


def save(fig: Figure, out_pdf: str | Path, dpi: int) -> None:
    """Write ``out_pdf`` and the PNG beside it, each atomically."""
    out_pdf = Path(out_pdf)
    for path in (out_pdf, out_pdf.with_suffix(".png")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix[1:])
    plt.close(fig)
