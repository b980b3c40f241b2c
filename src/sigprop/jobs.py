"""The jobs a configuration plans: per experiment, grid points x batches of seeds, each with its output path.

Read by the workflow (``workflow/rules/common.smk``) to list the seed-level simulation jobs; the configuration
itself is loaded and validated by :mod:`sigprop.config`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigprop.config import ConfigError
from sigprop.grid import expand_grid


def slug(value: Any) -> str:
    """A path-safe rendering of a parameter value ('1/sqrt(L)' -> '1oversqrtL')."""
    text = str(value).replace("/", "over")
    return "".join(c for c in text if c.isalnum() or c in ".+-")


def point_id(point: Mapping[str, Any]) -> str:
    """Directory name of a grid point: 'key~value/key~value' in the grid's key order ('all' if empty)."""
    return "/".join(f"{k}~{slug(v)}" for k, v in point.items()) or "all"


@dataclass(frozen=True)
class Job:
    """One seed-level job: an experiment, one grid point, a batch of seeds."""

    experiment: str
    point: str
    seeds: tuple[int, ...]
    spec: str  # JSON: kind, fixed, point, inner, seeds

    @property
    def path(self) -> str:
        """Output path under results/raw."""
        return f"results/raw/{self.experiment}/{self.point}/seeds~{self.seeds[0]}-{self.seeds[-1]}.parquet"


def experiment_jobs(name: str, exp: Mapping, kind: str) -> list[Job]:
    """The jobs of one experiment: grid points x batches of ``seeds_per_job`` seeds.

    Each job's spec names the function that runs it (``run``, from the kind's registry entry), so that the job
    itself never reads the registry: editing a caption there reruns no simulation.
    """
    from sigprop.analysis.registry import KINDS

    seeds = list(range(int(exp["seeds"])))
    per = int(exp.get("seeds_per_job", len(seeds)))
    jobs, seen = [], {}
    for point in expand_grid(exp.get("grid")):
        pid = point_id(point)
        if pid in seen and seen[pid] != point:
            raise ConfigError(f"experiments.{name}: grid points {seen[pid]} and {point} share the path {pid}")
        seen[pid] = point
        for start in range(0, len(seeds), per):
            batch = seeds[start : start + per]
            spec = json.dumps(
                {
                    "experiment": name,
                    "kind": kind,
                    "run": KINDS[kind].run,
                    "fixed": exp.get("fixed", {}),
                    "point": point,
                    "inner": exp.get("inner"),
                    "seeds": batch,
                },
                sort_keys=True,
            )
            jobs.append(Job(name, pid, tuple(batch), spec))
    return jobs
