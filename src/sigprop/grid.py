"""Parameter grids: a mapping is a Cartesian product, a list of mappings is the union of their products."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

Params = Mapping[str, Any]


def expand_grid(grid: Mapping[str, list] | list[Mapping[str, list]] | None) -> list[dict]:
    """All points of a grid: a mapping is a Cartesian product; a list is the union of its products."""
    if not grid:
        return [{}]
    if isinstance(grid, Mapping):
        keys = list(grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    points: list[dict] = []
    for part in grid:
        points += [pt for pt in expand_grid(part) if pt not in points]
    return points


def iter_inner(fixed: Params, point: Params, inner: Any) -> Iterator[dict]:
    """Full parameter dicts for one job: fixed values, then the job's point, then each inner point."""
    for sub in expand_grid(inner):
        yield {**fixed, **point, **sub}


def iter_points(exp: Params) -> list[dict]:
    """Every full parameter dict an experiment will run."""
    return [
        params
        for point in expand_grid(exp.get("grid"))
        for params in iter_inner(exp.get("fixed", {}), point, exp.get("inner"))
    ]
