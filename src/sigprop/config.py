"""Configuration: schema validation with messages that name the key and the fix, and the job list."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sigprop.grid import expand_grid, iter_inner


class ConfigError(ValueError):
    """A configuration that the pipeline refuses to run."""


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _explain(err: jsonschema.ValidationError) -> str:
    """One readable line for a schema error: the key, what is wrong, what is allowed."""
    where = _where(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"unknown key(s) {', '.join(map(repr, extra))} in {where}; allowed keys: {', '.join(allowed)}"
    if err.validator == "enum":
        return f"{where} = {err.instance!r} is not allowed; allowed values: {', '.join(map(str, err.validator_value))}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "oneOf" and err.context:
        return f"{where} = {err.instance!r}: " + "; or ".join(sorted({c.message for c in err.context}))
    return f"{where} = {err.instance!r}: {err.message}"


def _check(instance: Any, schema: Mapping, root: Mapping, prefix: str = "") -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, registry=_registry(root))
    return [prefix + _explain(e) for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.path))]


def _registry(root: Mapping) -> Any:
    from referencing import Registry, Resource

    return Registry().with_resource("urn:sigprop", Resource.from_contents(dict(root)))


def load_schema(path: str | Path) -> dict:
    """Read the YAML schema."""
    return yaml.safe_load(Path(path).read_text())


def validate_config(config: Mapping, schema_path: str | Path) -> None:
    """Raise :class:`ConfigError` listing every problem, before any job runs."""
    schema = load_schema(schema_path)
    problems = _check(config, schema, schema)
    if not problems:
        params = {"$ref": "urn:sigprop#/$defs/params"}
        for name, exp in config.get("experiments", {}).items():
            for params_point in iter_points(exp):
                problems += _check(params_point, params, schema, prefix=f"experiments.{name} parameter ")
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(unique))


def iter_points(exp: Mapping) -> list[dict]:
    """Every full parameter dict an experiment will run."""
    return [
        params
        for point in expand_grid(exp.get("grid"))
        for params in iter_inner(exp.get("fixed", {}), point, exp.get("inner"))
    ]


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
    """The jobs of one experiment: grid points x batches of ``seeds_per_job`` seeds."""
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
                    "fixed": exp.get("fixed", {}),
                    "point": point,
                    "inner": exp.get("inner"),
                    "seeds": batch,
                },
                sort_keys=True,
            )
            jobs.append(Job(name, pid, tuple(batch), spec))
    return jobs
