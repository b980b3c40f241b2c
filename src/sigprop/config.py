"""Configuration: scale files overlaid on their base, schema validation that fills the schema's defaults
(messages name the file, the key and the fix). The jobs a configuration plans: :mod:`sigprop.jobs`."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sigprop.grid import iter_points


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
    if err.validator == "oneOf" and err.instance in ([], {}):
        return (
            f"{where} is empty: an empty grid has no point to run; give at least one key with a list of values, "
            "or leave the key out"
        )
    if err.validator == "oneOf" and err.context:
        return f"{where} = {err.instance!r}: " + "; or ".join(sorted({c.message for c in err.context}))
    return f"{where} = {err.instance!r}: {err.message}"


def _fill_properties(validator: Any, properties: Mapping, instance: Any, schema: Mapping) -> Any:
    """The ``properties`` keyword that first sets every absent property that has a ``default`` (a copy)."""
    if validator.is_type(instance, "object"):
        for name, sub in properties.items():
            if isinstance(sub, Mapping) and "default" in sub:
                instance.setdefault(name, copy.deepcopy(sub["default"]))
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


#: validates and fills the schema's ``default``s in place (jsonschema's FAQ recipe). A default set inside a
#: ``oneOf``/``anyOf`` alternative would be written even when that alternative fails: the schema puts defaults
#: only under ``properties`` and under ``if``/``then`` (applied only where ``if`` matches).
FillingValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _fill_properties})


def _check(
    instance: Any, schema: Mapping, root: Mapping, prefix: str = "", fill: bool = False, origins: Mapping | None = None
) -> list[str]:
    kind = FillingValidator if fill else jsonschema.Draft202012Validator
    validator = kind(schema, registry=_registry(root))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    return [prefix + _origin(e, origins) + _explain(e) for e in errors]


def _origin(err: jsonschema.ValidationError, origins: Mapping | None) -> str:
    """'FILE: ' of the file that set the offending key (the longest recorded prefix of its path), or ''."""
    if not origins or err.validator == "required":  # a missing key: any file of the chain may add it
        return ""
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        allowed = (err.schema if isinstance(err.schema, dict) else {}).get("properties", {})
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            path = (*path, extra[0])
    for n in range(len(path), -1, -1):
        if path[:n] in origins:
            return f"{origins[path[:n]]}: "
    return ""


def _registry(root: Mapping) -> Any:
    from referencing import Registry, Resource

    return Registry().with_resource("urn:sigprop", Resource.from_contents(dict(root)))


def load_schema(path: str | Path) -> dict:
    """Read the YAML schema and fill in what the figure registry (:mod:`sigprop.analysis.registry`) defines.

    The schema file lists neither the figures and tables nor every experiment: ``figures`` and ``tables`` take
    the registry's keys, ``experiments`` takes every experiment a registry entry reads (those the file does not
    describe get the generic ``$defs/experiment``), and ``translation`` a section per translation figure or
    table that names its runs (``$defs/run_set`` or ``$defs/one_run``, as the entry's ``runs``).
    """
    from sigprop.analysis.registry import EXPERIMENTS, FIGURES, TABLES

    schema = yaml.safe_load(Path(path).read_text())
    props = schema.get("properties", {})
    if isinstance(props.get("figures", {}).get("items"), dict):
        props["figures"]["items"]["enum"] = list(FIGURES)
    if isinstance(props.get("tables", {}).get("items"), dict):
        props["tables"]["items"]["enum"] = list(TABLES)
    translation = schema.get("$defs", {}).get("translation", {}).get("properties")
    if isinstance(translation, dict):
        for key, spec in [*FIGURES.items(), *TABLES.items()]:
            if spec.run_section:
                translation.setdefault(key, {"$ref": f"#/$defs/{'one_run' if spec.runs == 'one' else 'run_set'}"})
    if isinstance(props.get("experiments", {}).get("properties"), dict):
        for name in EXPERIMENTS:
            if name != "translation":  # the translation runs have their own section (translation:)
                props["experiments"]["properties"].setdefault(name, {"$ref": "#/$defs/experiment"})
    return schema


def load_config_file(path: str | Path) -> dict:
    """Read a YAML config file; a syntax error raises :class:`ConfigError` naming the file, line and column."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        text = f"{where}: YAML syntax error: {err.problem or err.context}"
        if err.context and err.context_mark is not None and err.problem:
            c = err.context_mark
            text += f" ({err.context} at line {c.line + 1}, column {c.column + 1})"
        raise ConfigError(text) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: YAML syntax error: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a YAML mapping (key: value lines), not {type(data).__name__}")
    return data


def check_config_file(path: str | Path, schema_path: str | Path) -> dict:
    """Syntax and schema of a config file overlaid on its base (``python -m sigprop check-config FILE``);
    returns the config the workflow would run, the schema's defaults filled in."""
    config, origins = load_layered(path)
    coerce_to_schema(config, load_schema(schema_path))
    try:
        validate_config(config, schema_path, origins)
    except ConfigError as err:
        path = Path(path)
        text = _name_files(err, layer_files(path))
        users = [p.name for p in sorted(path.parent.glob("*.yaml")) if p != path and _names_base(p, path)]
        if users:
            text += (f"\n{path} is the base of {', '.join(users)}, not a config of its own: check a file that "
                     f"names it (base: {path.name})")
        raise ConfigError(text) from err
    return config


def _name_files(err: ConfigError, files: list) -> str:
    """The message with the files laid over each other named in its first line ('a.yaml over base.yaml')."""
    if len(files) < 2:
        return str(err)
    chain = " over ".join(map(str, files[::-1]))
    return str(err).replace("invalid configuration:", f"invalid configuration ({chain}):", 1)


def _names_base(path: Path, base: Path) -> bool:
    try:
        name = load_config_file(path).get("base")
    except ConfigError:
        return False
    return isinstance(name, str) and (path.parent / name).resolve() == base.resolve()


# ---------------------------------------------------------------- a scale file over its base
# A scale file (config/quick.yaml, ...) names its base file with `base: base.yaml` (relative to its own folder);
# the base holds what every scale shares. Overlay (JSON Merge Patch, RFC 7396): mappings merge key by key, any
# other value (a list, a number, a string) replaces the base's, and `key: null` removes a key the base has
# (every key that accepts null defaults to null, so there null means the same either way). Snakemake reads only
# the scale file (the Snakefile's `configfile:` only when no --configfile is given), so no key of another scale
# file can reach the config.


def merge(base: Mapping, over: Mapping) -> dict:
    """``over`` laid over ``base`` (copies): mappings merged recursively, every other value of ``over`` wins,
    ``None`` removes the key from ``base`` (and is kept where ``base`` has no such key)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if value is None and key in out:
            del out[key]
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _record(origins: dict, data: Any, source: str, path: tuple = ()) -> None:
    """Mark every key path of ``data`` as set by ``source`` (later files overwrite earlier marks)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            origins[(*path, key)] = source
            _record(origins, value, source, (*path, key))


def layer_files(path: str | Path) -> list[Path]:
    """The files a config file stands on, its base chain first and the file itself last."""
    chain = [Path(path)]
    while (name := load_config_file(chain[0]).get("base")) is not None:
        base = chain[0].parent / str(name)
        if base.resolve() in {p.resolve() for p in chain}:
            raise ConfigError(f"{path}: the base: keys form a loop at {base}")
        chain.insert(0, base)
    return chain


def load_layered(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, dict]:
    """A config file overlaid on the chain of files its ``base:`` keys name; returns the config (without
    ``base``) and the origins: key path -> the file that set it (for error messages)."""
    path = Path(path)
    if path.resolve() in _seen:
        chain = " -> ".join(map(str, (*_seen, path.resolve())))
        raise ConfigError(f"{path}: the base: keys form a loop ({chain}); a base file names no base or another")
    data = load_config_file(path)
    base_name = data.pop("base", None)
    if base_name is None:
        config, origins = {}, {}
    else:
        if not isinstance(base_name, str):
            raise ConfigError(f"{path}: base = {base_name!r}: give the base file's name, e.g. base: base.yaml")
        base_path = path.parent / base_name
        if not base_path.is_file():
            raise ConfigError(f"{path}: base = {base_name!r}: no file {base_path} (the name is relative to "
                              f"{path.parent or '.'})")
        config, origins = load_layered(base_path, (*_seen, path.resolve()))
    _record(origins, data, str(path))
    return merge(config, data), origins


def _plain(value: Any) -> Any:
    """Mappings (Snakemake's immutable ones included) as dicts, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return list(map(_plain, value)) if isinstance(value, list | tuple) else value


def workflow_config(
    config: MutableMapping, files: list, overrides: Mapping, schema_path: str | Path
) -> dict:
    """Replace Snakemake's ``config`` (in place) by the first file overlaid on its base, the later files and
    the ``--config`` values (``overrides``) laid over it in that order; values coerced, validated, defaults
    filled. Returns the origins (key path -> file) of :func:`load_layered`."""
    if not files:
        raise ConfigError("no config file: give one with --configfile (config/quick.yaml, config/paper.yaml, ...)")
    merged, origins = load_layered(files[0])
    for path in files[1:]:
        extra = load_config_file(path)
        if "base" in extra:
            raise ConfigError(f"{path}: base = {extra['base']!r}, but only the first --configfile may name a base "
                              f"(its base is laid under it; {path} is laid over it): drop its base: line")
        _record(origins, extra, str(path))
        merged = merge(merged, extra)
    overrides = _plain(overrides)
    _record(origins, overrides, "--config")
    merged = merge(merged, overrides)
    coerce_to_schema(merged, load_schema(schema_path))
    try:
        validate_config(merged, schema_path, origins)
    except ConfigError as err:
        raise ConfigError(_name_files(err, [*layer_files(files[0]), *files[1:]])) from err
    config.clear()
    config.update(merged)
    return origins


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict:
    """The config the workflow runs for a scale file: overlaid on its base, validated, defaults filled."""
    if schema_path is None:
        schema_path = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    return check_config_file(path, schema_path)


# ---------------------------------------------------------------- values given on the command line
# `snakemake --config "experiments={norm_density: {seeds: 5}}"` hands nested values over as strings ('5'):
# coerce_to_schema turns a string into the number or boolean the schema asks for where no string is allowed.


def _alternatives(schema: Any, root: Mapping) -> list[Mapping]:
    """The schemas an instance may match: $ref resolved, oneOf/anyOf flattened."""
    if not isinstance(schema, Mapping):
        return []
    if "$ref" in schema:
        ref = schema["$ref"].split("#/", 1)[-1]
        target: Any = root
        for part in ref.split("/"):
            target = target[part]
        return _alternatives(target, root)
    alts = [a for key in ("oneOf", "anyOf") for sub in schema.get(key, []) for a in _alternatives(sub, root)]
    return alts or [schema]


def _types(schema: Mapping) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _takes_string(text: str, schema: Mapping) -> bool:
    if "const" in schema:
        return schema["const"] == text
    if "enum" in schema:
        return text in schema["enum"]
    if "string" in _types(schema) or not _types(schema):
        return "pattern" not in schema or re.search(schema["pattern"], text) is not None
    return False


def _from_string(text: str, schema: Mapping) -> Any:
    """``text`` as the first non-string type ``schema`` allows, or ``text`` itself."""
    for kind in _types(schema) or ["integer", "number", "boolean"]:
        if kind == "integer" and re.fullmatch(r"[+-]?\d+", text.strip()):
            value: Any = int(text)
        elif kind == "number" and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text.strip()):
            value = float(text) if re.search(r"[.eE]", text) else int(text)
        elif kind == "boolean" and text.strip().lower() in ("true", "false"):
            value = text.strip().lower() == "true"
        else:
            continue
        if "enum" not in schema or value in schema["enum"]:
            return value
    return text


def _coerce(value: Any, schema: Any, root: Mapping) -> Any:
    alts = _alternatives(schema, root)
    if isinstance(value, str):
        if not alts or any(_takes_string(value, a) for a in alts):
            return value
        for alt in alts:
            new = _from_string(value, alt)
            if new is not value:
                return new
        return value
    if isinstance(value, MutableMapping):
        for alt in alts:
            if "object" in _types(alt) or "properties" in alt:
                for key in list(value):
                    sub = alt.get("properties", {}).get(key, alt.get("additionalProperties"))
                    value[key] = _coerce(value[key], sub, root)
                break
    elif isinstance(value, list):
        for alt in alts:
            if "array" in _types(alt) or "items" in alt:
                value[:] = [_coerce(v, alt.get("items"), root) for v in value]
                break
    return value


def coerce_to_schema(config: MutableMapping, schema: Mapping) -> MutableMapping:
    """Turn strings into the numbers and booleans the schema asks for, in place (grid, inner, fixed included)."""
    _coerce(config, schema, schema)
    params = {"$ref": "#/$defs/params"}
    for exp in (config.get("experiments") or {}).values():
        if not isinstance(exp, MutableMapping):
            continue
        if isinstance(exp.get("fixed"), MutableMapping):
            _coerce(exp["fixed"], params, schema)
        for key in ("grid", "inner"):
            parts = exp.get(key)
            for part in parts if isinstance(parts, list) else [parts]:
                if isinstance(part, MutableMapping):
                    for name, vals in part.items():
                        sub = schema.get("$defs", {}).get("params", {}).get("properties", {}).get(name)
                        if isinstance(vals, list) and sub is not None:
                            vals[:] = [_coerce(v, sub, schema) for v in vals]
    return config


def validate_config(config: MutableMapping, schema_path: str | Path, origins: Mapping | None = None) -> None:
    """Fill the schema's defaults into ``config`` (in place) and raise :class:`ConfigError` listing every
    problem, before any job runs; ``origins`` (:func:`load_layered`) names the file that set a bad key."""
    schema = load_schema(schema_path)
    problems = _check(config, schema, schema, fill=True, origins=origins)
    if not problems:
        params = {"$ref": "urn:sigprop#/$defs/params"}
        for name, exp in config.get("experiments", {}).items():
            source = (origins or {}).get(("experiments", name))
            prefix = (f"{source}: " if source else "") + f"experiments.{name} parameter "
            for params_point in iter_points(exp):
                problems += _check(params_point, params, schema, prefix=prefix)
    if not problems:
        problems += unworkable_values(config, origins)
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(unique))


def machine_memory() -> int:
    """Bytes of physical memory of this machine (0 where the system does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _parameter_bytes(values: Mapping, layers: int, stacks: int = 1) -> int:
    """A lower bound on the bytes of a model's parameters: attention (4 d^2) and feed-forward (2 d d_ff) of
    ``layers`` blocks in each of ``stacks`` stacks, float32 (float64 where ``dtype`` says so)."""
    d, d_ff = int(values["d_model"]), int(values.get("d_ff", 0))
    itemsize = 8 if values.get("dtype") == "float64" else 4
    return stacks * layers * (4 * d * d + 2 * d * d_ff) * itemsize


def unworkable_values(config: Mapping, origins: Mapping | None = None, memory: int | None = None) -> list[str]:
    """What passes the schema yet cannot work, one line each naming the key: a NaN or infinite number (the
    schema's bounds let NaN through), ``d_model`` not divisible by ``n_heads`` (the heads would silently drop
    columns), a model whose parameters alone exceed this machine's ``memory`` (default: its physical memory)."""
    import math

    memory = machine_memory() if memory is None else memory
    problems: list[str] = []

    def origin(path: tuple) -> str:
        for n in range(len(path), -1, -1):
            if origins and path[:n] in origins:
                return f"{origins[path[:n]]}: "
        return ""

    def walk(value: Any, path: tuple) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{origin(path)}{_where(path)} = {value}: not a finite number; give a finite value")
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))

    walk(config, ())

    def shape(values: Mapping, where: tuple, layers: int, stacks: int = 1) -> None:
        if not (isinstance(values.get("d_model"), int) and isinstance(values.get("n_heads"), int)):
            return
        d, h = values["d_model"], values["n_heads"]
        if d % h:
            problems.append(
                f"{origin(where)}{_where(where)}: d_model = {d} is not divisible by n_heads = {h} (each head "
                f"takes d_model / n_heads columns); choose d_model a multiple of n_heads, e.g. {d - d % h or h}"
            )
        need = _parameter_bytes(values, layers, stacks)
        if memory and need > memory:
            problems.append(
                f"{origin(where)}{_where(where)}: a model of d_model = {d}, d_ff = {values.get('d_ff')}, "
                f"{stacks * layers} blocks needs at least {need / 2**30:.1f} GiB for its parameters alone; this "
                f"machine has {memory / 2**30:.1f} GiB of memory: choose a smaller model"
            )

    for name, exp in (config.get("experiments") or {}).items():
        if isinstance(exp, Mapping):
            for point in iter_points(exp):
                shape(point, ("experiments", name), int(point.get("n_layers", 1)))
    translation = config.get("translation")
    if isinstance(translation, Mapping) and isinstance(translation.get("model"), Mapping):
        layers = [v for key, part in translation.items() if isinstance(part, Mapping)
                  for v in (lambda x: x if isinstance(x, list) else [x])(part.get("layers", [])) if isinstance(v, int)]
        shape(translation["model"], ("translation", "model"), max(layers, default=1), stacks=2)
    return list(dict.fromkeys(problems))
