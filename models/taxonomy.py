"""The support taxonomy (``models/taxonomy.yaml``): leaves, parents, feedback types, teams, complexity.

One file drives the generator, the classifier's label space, routing, tiering and auto-reply rules, so they
cannot disagree. The digest goes into MLflow so every model records which taxonomy it was trained against.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).with_name("taxonomy.yaml")
COMPLEXITIES = ("simple", "standard", "complex")


@dataclass(frozen=True)
class Category:
    key: str
    name: str
    parent: str
    feedback_type: str
    team: str
    complexity: str
    auto_reply: bool
    base_share: float


@dataclass(frozen=True)
class Taxonomy:
    categories: dict[str, Category]
    parents: dict[str, str]
    feedback_types: tuple[str, ...]
    teams: tuple[str, ...]
    csat_reasons: dict[str, str]
    digest: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def leaves(self) -> list[str]:
        return list(self.categories)

    def is_leaf(self, key: str) -> bool:
        return key in self.categories

    def parent_of(self, key: str) -> str:
        return self.categories[key].parent

    def feedback_type_of(self, key: str) -> str:
        return self.categories[key].feedback_type

    def siblings(self, key: str) -> list[str]:
        parent = self.parent_of(key)
        return [k for k, c in self.categories.items() if c.parent == parent and k != key]


def parse_taxonomy(data: dict[str, Any]) -> Taxonomy:
    """Validate and build; every error names the offending key."""
    feedback_types = tuple(data.get("feedback_types") or ())
    teams = tuple(data.get("teams") or ())
    parents = dict(data.get("parents") or {})
    categories: dict[str, Category] = {}
    for entry in data.get("categories") or ():
        key = entry.get("key")
        if not key:
            raise ValueError(f"taxonomy category without a key: {entry!r}")
        if key in categories:
            raise ValueError(f"taxonomy category {key!r} is defined twice")
        checks = (("parent", parents), ("feedback_type", feedback_types), ("team", teams),
                  ("complexity", COMPLEXITIES))
        for name, allowed in checks:
            if entry.get(name) not in allowed:
                raise ValueError(f"taxonomy category {key!r}: {name} {entry.get(name)!r} is not one of "
                                 f"{sorted(allowed)}")
        categories[key] = Category(
            key=key, name=str(entry.get("name") or key), parent=entry["parent"],
            feedback_type=entry["feedback_type"], team=entry["team"], complexity=entry["complexity"],
            auto_reply=bool(entry.get("auto_reply", False)), base_share=float(entry.get("base_share", 1)),
        )
    if not categories:
        raise ValueError("taxonomy has no categories")
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return Taxonomy(categories=categories, parents=parents, feedback_types=feedback_types, teams=teams,
                    csat_reasons=dict(data.get("csat_reasons") or {}),
                    digest=hashlib.sha256(canonical).hexdigest(), raw=data)


@lru_cache(maxsize=8)
def _load(path: str) -> Taxonomy:
    return parse_taxonomy(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    return _load(str(Path(path or DEFAULT_PATH).resolve()))
