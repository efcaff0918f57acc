"""The configuration schema, the one source of defaults.

``schemas/config.schema.yaml`` and, for each method's section, ``schemas/methods/<method>.schema.yaml``
document every key and hold every default. Snakemake's ``validate`` fills the workflow's config from them at
parse time; :func:`complete` fills, from the same files, the settings that a step called by hand
(``python -m pipeline train '<json>'``) receives, so a step never keeps defaults of its own. Defaults are filled the way Snakemake fills them (the jsonschema FAQ's
``extend_with_default``), except that each default is copied, so filling one instance never changes
the schema or another instance. Torch-free: the Snakefile imports it at parse time.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
#: a method's settings: the config section named after it, its schema ``<method>.schema.yaml`` in this folder
METHOD_SCHEMAS = SCHEMA_PATH.parent / "methods"


class ConfigError(ValueError):
    """A configuration (or a step's arguments) that the schema or a cross-field check rejects."""


def method_sections() -> dict[str, Path]:
    """Method name -> the schema file of its config section (``schemas/methods/<method>.schema.yaml``);
    a method without settings has none."""
    return {path.name[: -len(".schema.yaml")]: path for path in sorted(METHOD_SCHEMAS.glob("*.schema.yaml"))}


@lru_cache(maxsize=None)
def schema() -> dict[str, Any]:
    """The config's schema: ``schemas/config.schema.yaml`` with each method's section merged in. Read from
    the files, not from the method modules, so that the schema needs no import of them (and no torch)."""
    root = yaml.safe_load(SCHEMA_PATH.read_text())
    for name, path in method_sections().items():
        section = yaml.safe_load(path.read_text())
        section.pop("$schema", None)  # a resource's keyword, not a subschema's
        root["definitions"][name] = section
        root["properties"][name] = {"$ref": f"#/definitions/{name}", "default": {}}
    root["additionalProperties"] = False  # merged, every section is known: any other is a typo
    return root


@lru_cache(maxsize=None)
def _validator_class():
    # jsonschema: only when a config is validated, not in every step that imports ConfigError
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, subschema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from properties(validator, props, instance, subschema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def complete(value: Any, definition: str | None = None, where: str = "config") -> Any:
    """A copy of ``value`` validated against the schema (or its ``definitions/<definition>``), with every
    default filled in. Raises :class:`ConfigError` naming the offending key, e.g. ``train.lr``."""
    root = schema()
    # a definition is checked alone, not with the root's own keywords (required keys, properties)
    target = root if definition is None else {"$ref": f"#/definitions/{definition}", "definitions": root["definitions"]}
    return _fill(target, value, where)


def _fill(target: dict[str, Any], value: Any, where: str) -> Any:
    # jsonschema: only when a config is validated, not in every step that imports ConfigError
    from jsonschema.exceptions import best_match

    value = copy.deepcopy(value)
    error = best_match(_validator_class()(target).iter_errors(value))
    if error is not None:
        raise ConfigError(f"{'.'.join([where, *map(str, error.absolute_path)])}: {error.message}")
    return value


def section_defaults(definition: str) -> dict[str, Any]:
    """Every default of one schema definition (e.g. ``train``), as a step called without settings sees them."""
    return complete({}, definition, definition)


def complete_section(name: str, value: Any) -> Any:
    """One top-level config section (``train``, ``warmup``, ``teacher`` ...) validated against its schema,
    defaults filled in; a required section that is missing is an error naming it."""
    root = schema()
    if name not in root["properties"]:
        raise ConfigError(f"config: unknown section {name!r}")
    if value is None:
        if "default" not in root["properties"][name]:
            raise ConfigError(f"config.{name}: missing (no default)")
        value = root["properties"][name]["default"]
    return _fill({**root["properties"][name], "definitions": root["definitions"]}, value, name)


def allowed_values(key: str) -> tuple[Any, ...]:
    """The values the schema allows at ``key`` (dotted, e.g. ``splits.dev.fallback``): its ``enum``, for a
    step that checks a value given outside the workflow against the one source of them."""
    root, node = schema(), schema()
    for part in key.split("."):
        while "$ref" in node:  # "#/definitions/<name>"
            node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        if part not in node.get("properties", {}):
            raise KeyError(f"schema: no key {key!r}")
        node = node["properties"][part]
    if "enum" not in node:
        raise KeyError(f"schema: {key!r} has no enum")
    return tuple(node["enum"])
