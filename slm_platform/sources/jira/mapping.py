"""The mapping of a Jira (Service Management) site onto canonical tickets, read from YAML.

Statuses, priorities, request / issue types, clients, services and teams are named per site, so they are
configuration: ``config/sources/jira_sample.yaml`` documents every key. Values missing from a map fall back
as documented there; a ticket whose client or service stays unknown is written with the raw value and the
loader quarantines it with the value in its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CANONICAL_TYPES = ("incident", "request", "complaint", "problem", "change")
# Jira's status categories (statusCategory.key): the fallback for a status the file does not name
CATEGORY_DEFAULTS = {"new": "new", "indeterminate": "in_progress", "done": "resolved"}


class MappingError(ValueError):
    """The mapping file is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class FieldMap:
    """A Jira field (id: project, customfield_10050…) → a canonical code: a value map, then a default."""

    field: str
    values: dict[str, str] = field(default_factory=dict)
    default: str | None = None

    def code(self, raw: str | None) -> str | None:
        if raw is not None and raw in self.values:
            return self.values[raw]
        return self.default or raw


@dataclass(frozen=True)
class JiraMapping:
    path: Path
    source: str = "jira"
    jql: str | None = None  # scope, ANDed with the window (e.g. project in (ACME, GLOB))
    page_size: int = 100
    statuses: dict[str, str] = field(default_factory=dict)  # Jira status name (case-insensitive) -> canonical
    status_categories: dict[str, str] = field(default_factory=lambda: dict(CATEGORY_DEFAULTS))
    priorities: dict[str, str] = field(default_factory=dict)  # Jira priority name -> P1..P4
    request_type_field: str | None = "customfield_10010"  # JSM "Customer Request Type"
    request_types: dict[str, str] = field(default_factory=dict)  # request type name -> ticket_type
    issue_types: dict[str, str] = field(default_factory=dict)  # issue type name -> ticket_type
    default_ticket_type: str | None = None
    client: FieldMap = field(default_factory=lambda: FieldMap("project"))
    service: FieldMap | None = None
    team_field: str | None = None  # a team / group custom field: assignment group = its value
    assignee_groups: dict[str, str] = field(default_factory=dict)  # assignee name/accountId -> group
    default_group: str | None = None
    major_field: str | None = None  # a field whose non-empty value (or listed values) flags a major incident
    major_values: tuple[str, ...] = ()
    category_field: str | None = None
    sla_names: dict[str, str] = field(default_factory=dict)  # response/resolution -> JSM SLA name

    # ---------------------------------------------------------------- values
    def status(self, name: str | None, category: str | None = None) -> str | None:
        if not name:
            return None
        key = name.strip().lower()
        if key in self.statuses:
            return self.statuses[key]
        if category and category in self.status_categories:
            return self.status_categories[category]
        return re.sub(r"[^a-z0-9]+", "_", key).strip("_") or "unknown"

    def priority(self, name: str | None) -> str | None:
        if not name:
            return None
        if name in self.priorities:
            return self.priorities[name]
        m = re.match(r"\s*P?(\d)", name)  # "P2", "2 - High"
        return f"P{min(max(int(m.group(1)), 1), 4)}" if m and int(m.group(1)) >= 1 else None

    def ticket_type(self, request_type: str | None, issue_type: str | None) -> str | None:
        if request_type and request_type in self.request_types:
            return self.request_types[request_type]
        if issue_type and issue_type in self.issue_types:
            return self.issue_types[issue_type]
        if self.default_ticket_type:
            return self.default_ticket_type
        low = (issue_type or "").strip().lower()
        return low if low in CANONICAL_TYPES else None

    def group(self, team: str | None, assignee: str | None, assignee_id: str | None) -> str | None:
        """Assignment group: the team field's value if one is configured, else the assignee's group."""
        if self.team_field:
            return team or self.default_group
        for k in (assignee_id, assignee):
            if k and k in self.assignee_groups:
                return self.assignee_groups[k]
        return self.default_group if (assignee or assignee_id) else None

    def fields(self) -> list[str]:
        """The issue fields the search asks for."""
        wanted = {
            "status",
            "priority",
            "issuetype",
            "created",
            "updated",
            "resolutiondate",
            "assignee",
            "project",
            self.client.field,
        }
        for f in (
            self.request_type_field,
            self.team_field,
            self.major_field,
            self.category_field,
            self.service.field if self.service else None,
        ):
            if f:
                wanted.add(f)
        return sorted(wanted)


def _map(raw: Any, path: Path, key: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: '{key}' must be a mapping of names to codes")
    return {str(k): str(v) for k, v in raw.items()}


def _field_map(raw: Any, path: Path, key: str) -> FieldMap | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.get("field"):
        raise MappingError(f"{path}: '{key}' needs a 'field' (a Jira field id such as project)")
    return FieldMap(str(raw["field"]), _map(raw.get("map"), path, f"{key}.map"), raw.get("default"))


def load_mapping(path: Path | str) -> JiraMapping:
    """Read and check a mapping file (config/sources/jira_sample.yaml documents it)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: cannot read the mapping: {exc}") from exc
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: expected a mapping at the top level")
    known = {
        "source", "jql", "page_size", "statuses", "status_categories", "priorities", "request_types",
        "issue_types", "default_ticket_type", "client", "service", "team", "sla",
        "major", "category_field",
    }  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MappingError(f"{path}: unknown key(s) {', '.join(unknown)}")
    statuses = {k.strip().lower(): v for k, v in _map(raw.get("statuses"), path, "statuses").items()}
    cats = {**CATEGORY_DEFAULTS, **_map(raw.get("status_categories"), path, "status_categories")}
    priorities = _map(raw.get("priorities"), path, "priorities")
    for name, p in priorities.items():
        if p not in ("P1", "P2", "P3", "P4"):
            raise MappingError(f"{path}: priorities.{name}: {p!r} is not one of P1..P4")
    rt = raw.get("request_types") or {}
    if not isinstance(rt, dict):
        raise MappingError(f"{path}: 'request_types' must be a mapping")
    rt_field = rt.get("field", "customfield_10010")
    rt_map = _map(rt.get("map"), path, "request_types.map")
    it_map = _map(raw.get("issue_types"), path, "issue_types")
    for where, m in (("request_types.map", rt_map), ("issue_types", it_map)):
        for name, t in m.items():
            if t not in CANONICAL_TYPES:
                known = ", ".join(CANONICAL_TYPES)
                raise MappingError(f"{path}: {where}.{name}: {t!r} is not one of {known}")
    team = raw.get("team") or {}
    if not isinstance(team, dict):
        raise MappingError(f"{path}: 'team' must be a mapping (field, or assignees)")
    major = raw.get("major") or {}
    page_size = int(raw.get("page_size", 100))
    if not 1 <= page_size <= 5000:
        raise MappingError(f"{path}: page_size must be 1..5000")
    return JiraMapping(
        path=path,
        source=str(raw.get("source") or "jira"),
        jql=raw.get("jql"),
        page_size=page_size,
        statuses=statuses,
        status_categories=cats,
        priorities=priorities,
        request_type_field=rt_field or None,
        request_types=rt_map,
        issue_types=it_map,
        default_ticket_type=raw.get("default_ticket_type"),
        client=_field_map(raw.get("client"), path, "client") or FieldMap("project"),
        service=_field_map(raw.get("service"), path, "service"),
        team_field=team.get("field"),
        assignee_groups=_map(team.get("assignees"), path, "team.assignees"),
        default_group=team.get("default"),
        major_field=major.get("field"),
        major_values=tuple(str(v) for v in major.get("values") or ()),
        category_field=raw.get("category_field"),
        sla_names=_map(raw.get("sla"), path, "sla"),
    )
