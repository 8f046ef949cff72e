"""The pipeline's configuration: `config/config.yaml` holds the global keys (profile,
seeds, threads, trainer, resources, report) and `config/studies/<study>.yaml` one
study's section, its claims (`claims: {<study>: [...]}`) and its profile overrides
(`profiles: {smoke: {<study>: ...}}`). Each file's maps merge into one raw config;
the selected profile (`profiles.<name>`) is deep-merged on top (maps merge key by key,
anything else replaces, a null removes the key). The resolved config is checked against
`config/schema.yaml` (global keys and shared `$defs`) and `config/schemas/<study>.yaml`
(one study's section). Light on imports: the Snakefile loads this at parse time.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

PROFILE_KEYS = ("profile", "profiles")
CONFIG_DIR = Path("config")


def deep_merge(base: dict, override: dict) -> dict:
    """A new dict: `override` merged into `base` (null removes a key)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def study_config_files(config_dir: str | Path = CONFIG_DIR) -> list[Path]:
    """`config/studies/*.yaml`, one per study, in name order (the studies' order everywhere)."""
    return sorted(Path(config_dir, "studies").glob("*.yaml"))


def study_names(config_dir: str | Path = CONFIG_DIR) -> list[str]:
    return [path.stem for path in study_config_files(config_dir)]


def read_config(config_dir: str | Path = CONFIG_DIR, *overrides: dict) -> dict:
    """The raw config (global file + every study file), then `overrides` merged on top:
    what Snakemake's `configfile:` directives and `--config`/`--configfile` produce."""
    raw: dict = {}
    for path in [Path(config_dir, "config.yaml"), *study_config_files(config_dir)]:
        raw = deep_merge(raw, yaml.safe_load(path.read_text()) or {})
    for override in overrides:
        raw = deep_merge(raw, override)
    return raw


def load_config(config_dir: str | Path = CONFIG_DIR, profile: str | None = None, *overrides: dict) -> dict:
    """The resolved config of `profile` (default: the file's), as the Snakefile resolves it."""
    raw = read_config(config_dir, *overrides, *([{"profile": profile}] if profile else []))
    return resolve_profile(raw, study_names(config_dir))


def resolve_profile(raw: dict, studies: list[str]) -> dict:
    """The config a run uses: base + `profiles[profile]`, teacher defaults filled, the
    study names under `studies` and the claims as one list in study order."""
    profiles = raw.get("profiles") or {}
    name = raw.get("profile", "default")
    allowed = sorted({"default", *profiles})
    if name not in allowed:
        raise ValueError(f"config key 'profile': unknown profile {name!r}; allowed: {', '.join(allowed)}")
    base = {k: v for k, v in raw.items() if k not in PROFILE_KEYS}
    resolved = deep_merge(base, profiles.get(name) or {})
    resolved["profile"] = name
    resolved["studies"] = list(studies)
    resolved["claims"] = study_claims(resolved.get("claims") or {}, studies)
    return fill_defaults(resolved)


def study_claims(claims: dict, studies: list[str]) -> list[dict]:
    """`claims: {<study>: [claim, ...]}` as one list in study order, each claim's `study` set."""
    unknown = sorted(set(claims) - set(studies))
    if unknown:
        raise ValueError(f"config key 'claims': {unknown} are not studies (config/studies/*.yaml: {studies})")
    return [{**claim, "study": study} for study in studies for claim in claims.get(study) or []]


def premise_order(claims: list[dict]) -> list[dict]:
    """`claims` reordered so that every claim comes after the claims it `requires` (depth
    first, otherwise in the given order). A repeated id, an unknown premise or a cycle of
    premises is a ValueError naming the claim."""
    by_id: dict = {}
    for claim in claims:
        if claim.get("id") in by_id:
            raise ValueError(f"config key 'claims': duplicate claim id {claim.get('id')!r}")
        by_id[claim.get("id")] = claim
    order: list[dict] = []

    def visit(cid, path: list) -> None:
        if cid in path:
            cycle = " -> ".join(map(str, path[path.index(cid):] + [cid]))
            raise ValueError(f"config key 'claims': claim {cid!r}: its premises form a cycle {cycle}")
        if by_id[cid] in order:
            return
        for premise in by_id[cid].get("requires") or []:
            if premise not in by_id:
                raise ValueError(f"config key 'claims': claim {cid!r} requires unknown claim {premise!r}")
            visit(premise, path + [cid])
        order.append(by_id[cid])

    for cid in by_id:
        visit(cid, [])
    return order


def fill_defaults(cfg: dict) -> dict:
    """Teachers inherit the top-level seeds and the `natural` training method."""
    for teacher in (cfg.get("teachers") or {}).values():
        if isinstance(teacher, dict):
            teacher.setdefault("seeds", list(cfg.get("seeds", [0])))
            teacher.setdefault("method", "natural")
    return cfg


def validate_config(cfg: dict, config_dir: str | Path = CONFIG_DIR) -> None:
    """Check the resolved config against config/schema.yaml and each study's section
    against config/schemas/<study>.yaml (which may `$ref` the shared `$defs`); the error
    names the failing key, e.g. `tgeo_kd.train.lr: 0 is less than or equal to ...`. Then
    the claims' premises (premise_order)."""
    import jsonschema
    from referencing import Registry, Resource

    schemas = {path.resolve().as_uri(): yaml.safe_load(path.read_text())
               for path in [Path(config_dir, "schema.yaml"), *Path(config_dir, "schemas").glob("*.yaml")]}
    registry = Registry().with_resources((uri, Resource.from_contents({**s, "$id": uri})) for uri, s in schemas.items())
    sections = set(cfg) - set(schemas[Path(config_dir, "schema.yaml").resolve().as_uri()]["properties"])
    if sections - set(cfg.get("studies", [])) or set(cfg.get("studies", [])) - sections:
        raise ValueError(f"config keys {sorted(sections ^ set(cfg.get('studies', [])))}: every top-level key is a "
                         f"global key of config/config.yaml or a study with its config/studies/<study>.yaml")
    checks = [("", cfg, Path(config_dir, "schema.yaml"))]
    checks += [(f"{study}.", cfg.get(study), Path(config_dir, "schemas", f"{study}.yaml"))
               for study in cfg.get("studies", []) if Path(config_dir, "schemas", f"{study}.yaml").exists()]
    for prefix, section, path in checks:
        uri = path.resolve().as_uri()
        validator = jsonschema.Draft202012Validator({**schemas[uri], "$id": uri}, registry=registry)
        error = jsonschema.exceptions.best_match(validator.iter_errors(section))
        if error is not None:
            where = prefix + ".".join(map(str, error.absolute_path))
            raise ValueError(f"config key '{where.rstrip('.') or '<top>'}': {error.message} (schema {path})")
    premise_order(cfg.get("claims") or [])
