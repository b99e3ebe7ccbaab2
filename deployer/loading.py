"""Reading Kamal's configuration files: ERB first, then YAML, then the destination merge.

``config/deploy.yml`` and ``config/deploy.DEST.yml`` are rendered with ERB (:mod:`deployer.erb`), as
Kamal renders them, then parsed as YAML with merge keys (``<<: *defaults`` and ``<<: [*a, *b]``,
applied in document order as Ruby's Psych does) and with duplicate keys refused. The guide's
multi-document form (``destination: NAME`` sections after the first document) is also read.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from deployer import erb, schema
from deployer.errors import ConfigError

MERGE_TAG = "tag:yaml.org,2002:merge"


def deep_merge(base: Any, override: Any) -> Any:
    """Hashes merge recursively; scalars and arrays in ``override`` replace the base value."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


class _Loader(yaml.SafeLoader):
    """SafeLoader with Psych's merge-key order that rejects duplicate keys (a common silent mistake)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    seen: set[Any] = set()
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG:
            result.update(_merged(loader, value_node))
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _merged(loader: _Loader, node: yaml.Node) -> dict[Any, Any]:
    """``<<: *a`` gives a's keys; ``<<: [*a, *b]`` gives both, the earlier one winning (as Psych)."""
    where = f"line {node.start_mark.line + 1}"
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(loader, node)
    if isinstance(node, yaml.SequenceNode):
        merged: dict[Any, Any] = {}
        for item in reversed(node.value):
            if not isinstance(item, yaml.MappingNode):
                raise ConfigError(f"{where}: merge key `<<`: expected maps in the list, got {item.tag}")
            merged.update(_construct_mapping(loader, item))
        return merged
    raise ConfigError(f"{where}: merge key `<<`: expected a map or a list of maps, got {node.tag}")


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def display_path(path: Path) -> str:
    """The path as a person would type it: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _yaml_error(name: str, error: yaml.YAMLError, rendered: bool) -> ConfigError:
    after = " (line numbers after ERB rendering)" if rendered else ""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        context = f" ({error.context})" if error.context else ""
        return ConfigError(
            f"{name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {error.problem}{context}{after}"
        )
    return ConfigError(f"{name}: invalid YAML: {error}{after}")


def erb_env(destination: str | None) -> dict[str, str]:
    """The ``ENV`` templates see: this process's, with ``KAMAL_DESTINATION`` set as Kamal sets it."""
    env = {k: v for k, v in os.environ.items() if k != "KAMAL_DESTINATION"}
    if destination:
        env["KAMAL_DESTINATION"] = destination
    return env


def read_documents(path: Path, env: dict[str, str] | None = None) -> list[Any]:
    """The file's YAML documents, after ERB; errors name the file (and line), never ``<unicode string>``."""
    name = display_path(path)
    try:
        template = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{name}: configuration file not found (run `deployer init` to create one, or pass -c FILE)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}: cannot read: {e}") from None
    text = erb.render(template, name, env=env)
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None
    except yaml.YAMLError as e:
        raise _yaml_error(name, e, rendered=text != template) from None


def destination_file(path: Path, destination: str) -> Path:
    return path.with_name(f"{path.stem}.{destination}{path.suffix}")


def _sections(path: Path, docs: list[Any]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for i, doc in enumerate(docs[1:], start=2):
        if not isinstance(doc, dict) or not isinstance(doc.get("destination"), str):
            raise ConfigError(
                f"{display_path(path)}: document {i}: expected a map with a `destination: NAME` key"
            )
        name = doc["destination"]
        section = {k: v for k, v in doc.items() if k != "destination"}
        schema.ROOT.check(section, "", f"{display_path(path)} (destination {name})")
        sections[name] = section
    return sections


def _root_map(path: Path, docs: list[Any]) -> dict[str, Any]:
    if not docs:
        raise ConfigError(f"{display_path(path)}: the file is empty")
    base = docs[0]
    if not isinstance(base, dict):
        raise ConfigError(f"{display_path(path)}: (root): expected a map, got {schema._show(base)}")
    return base


def load_raw(path: Path, destination: str | None) -> tuple[dict[str, Any], str]:
    """Read and merge the raw config; returns (merged dict, description of its sources)."""
    env = erb_env(destination)
    docs = read_documents(path, env)
    base = _root_map(path, docs)
    if "destination" in base:
        raise ConfigError(
            f"{display_path(path)}: destination: only allowed in the second and later YAML documents"
        )
    sections = _sections(path, docs)
    schema.ROOT.check(base, "", display_path(path))
    merged: dict[str, Any] = base
    sources = [display_path(path)]
    if not destination:
        return merged, " + ".join(sources)
    found = destination in sections
    if found:
        merged = deep_merge(merged, sections[destination])
    dest_path = destination_file(path, destination)
    if dest_path.exists():
        dest_docs = read_documents(dest_path, env)
        dest = _root_map(dest_path, dest_docs) if dest_docs else {}
        schema.ROOT.check(dest, "", display_path(dest_path))
        merged = deep_merge(merged, dest)
        sources.append(display_path(dest_path))
        found = True
    if not found:
        raise ConfigError(
            f"{display_path(dest_path)}: destination {destination!r} not found (no such file and no "
            f"`destination: {destination}` document in {display_path(path)})"
        )
    return merged, " + ".join(sources)
