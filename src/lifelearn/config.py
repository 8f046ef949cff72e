"""Config profiles: the base config is the `default` profile; `profiles.<name>` holds
overrides deep-merged on top (maps merge key by key, anything else replaces, and a
null value removes the key). Light on imports: the Snakefile loads this at parse time."""
from __future__ import annotations

import copy

PROFILE_KEYS = ("profile", "profiles")


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


def resolve_profile(raw: dict) -> dict:
    """The config a run uses: base + `profiles[profile]`, with per-teacher defaults filled."""
    profiles = raw.get("profiles") or {}
    name = raw.get("profile", "default")
    allowed = sorted({"default", *profiles})
    if name not in allowed:
        raise ValueError(f"config key 'profile': unknown profile {name!r}; allowed: {', '.join(allowed)}")
    base = {k: v for k, v in raw.items() if k not in PROFILE_KEYS}
    resolved = deep_merge(base, profiles.get(name) or {})
    resolved["profile"] = name
    return fill_defaults(resolved)


def fill_defaults(cfg: dict) -> dict:
    """Teachers inherit the top-level seeds and the `natural` training method."""
    for teacher in (cfg.get("teachers") or {}).values():
        if isinstance(teacher, dict):
            teacher.setdefault("seeds", list(cfg.get("seeds", [0])))
            teacher.setdefault("method", "natural")
    cfg.setdefault("claims", [])
    return cfg
