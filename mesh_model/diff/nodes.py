"""What a model change does to each node: resources added, removed and changed, field by field,
plus a one-line summary in App Mesh words ("route catalog-router/main: catalog-v2 10% -> 50%")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from mesh_model.compiler import type_urls
from mesh_model.diff.fields import field_diff, short, to_dict
from mesh_model.explain.appmesh import AppMeshNames

KIND_WORDS = {
    type_urls.CLUSTER: "cluster", type_urls.ENDPOINT: "endpoints", type_urls.LISTENER: "listener",
    type_urls.ROUTE: "route configuration", type_urls.SECRET: "secret",
}


@dataclass
class ResourceChange:
    type_url: str
    name: str
    change: str  # added | removed | changed
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return KIND_WORDS.get(self.type_url, self.type_url.rsplit(".", 1)[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"type": type_urls.PLURAL_NAMES.get(self.type_url, self.type_url), "name": self.name, "change": self.change,
                "fields": [{"path": p, "old": o, "new": n} for p, o, n in self.fields]}


@dataclass
class NodeDiff:
    node: str
    changes: list[ResourceChange] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    node_change: Optional[str] = None  # added | removed when the node itself is new or gone

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.node_change is not None

    def summary_line(self) -> str:
        return f"{self.node}: " + ("; ".join(self.summary) if self.summary else "no changes")

    def text(self) -> str:
        lines = [self.summary_line()]
        sign = {"added": "+", "removed": "-", "changed": "~"}
        for c in self.changes:
            lines.append(f"  {sign[c.change]} {c.kind} {c.name}")
            for path, old, new in c.fields:
                lines.append(f"      {path}: {short(old)} -> {short(new)}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "node_change": self.node_change, "summary": self.summary,
                "changes": [c.to_dict() for c in self.changes]}


def diff_resources(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[ResourceChange]:
    """Resource-level and field-level changes between two ``compile_node`` outputs."""
    changes = []
    for type_url in type_urls.PUSH_ORDER:
        before, after = old.get(type_url, {}), new.get(type_url, {})
        for name in sorted(set(before) | set(after)):
            if name not in after:
                changes.append(ResourceChange(type_url, name, "removed"))
            elif name not in before:
                changes.append(ResourceChange(type_url, name, "added"))
            elif before[name] != after[name]:
                fields = field_diff(to_dict(before[name]), to_dict(after[name]))
                if fields:
                    changes.append(ResourceChange(type_url, name, "changed", fields))
    return changes


def _pct(weight: float, total: float) -> str:
    value = 100.0 * weight / total if total else 0.0
    return f"{value:.1f}".rstrip("0").rstrip(".") + "%"


def _routes(config: Any) -> dict[tuple[str, str], tuple[Any, Any]]:
    out = {}
    if config is None:
        return out
    for vh in config.virtual_hosts:
        for route in vh.routes:
            out[(vh.name, route.name)] = (vh, route)
    return out


class _Summarizer:
    def __init__(self, old_model, new_model, mesh: Optional[str], names: Optional[tuple] = None):
        old_names, new_names = names or (AppMeshNames(old_model), AppMeshNames(new_model))
        self.old_names = old_names.for_mesh(mesh)
        self.new_names = new_names.for_mesh(mesh)

    def node_label(self, cluster: str) -> str:
        for names in (self.new_names, self.old_names):
            kind, node, port, _ = names.cluster(cluster)
            if node:
                return node
        return cluster

    def route_label(self, vhost, route, names=None) -> str:
        route_name = route.name
        if "_self_redirect_" in route.route.cluster:
            gateway = vhost.name.rsplit("_", 1)[0]
            name = route_name[: -len("-exact")] if route_name.endswith("-exact") else route_name
            return f"gateway route {gateway}/{name}"
        names = names or self.new_names
        domains = [d for d in vhost.domains if d != "*"]
        service = domains[0].split(":")[0] if domains else None
        router = names.router_of(service) if service else None
        if router:
            return f"route {router}/{route_name}"
        if route_name == "provider" and service:
            node = names.provider_node(service)
            return f"service {service} (provided by {node})" if node else f"service {service}"
        return f"route {vhost.name}/{route_name}"

    def weights(self, route) -> dict[str, int]:
        action = route.route
        if action.WhichOneof("cluster_specifier") == "weighted_clusters":
            return {c.name: c.weight.value for c in action.weighted_clusters.clusters}
        if action.cluster:
            return {action.cluster: 1}
        return {}

    def route_phrases(self, old_route, new_route) -> list[str]:
        phrases = []
        ow, nw = self.weights(old_route), self.weights(new_route)
        if ow != nw:
            ot, nt = sum(ow.values()), sum(nw.values())
            parts = []
            for cluster in list(ow) + [c for c in nw if c not in ow]:
                before, after = _pct(ow.get(cluster, 0), ot), _pct(nw.get(cluster, 0), nt)
                if before != after:
                    parts.append(f"{self.node_label(cluster)} {before} -> {after}")
            if parts:
                phrases.append(", ".join(parts))
        if old_route.match != new_route.match:
            phrases.append("match changed")
        oa, na = old_route.route, new_route.route
        if oa.timeout != na.timeout:
            phrases.append(f"timeout {_dur(oa.timeout)} -> {_dur(na.timeout)}")
        if oa.idle_timeout != na.idle_timeout:
            phrases.append(f"idle timeout {_dur(oa.idle_timeout)} -> {_dur(na.idle_timeout)}")
        if oa.retry_policy != na.retry_policy:
            o, n = oa.retry_policy, na.retry_policy
            if o.num_retries != n.num_retries:
                phrases.append(f"retries {o.num_retries.value} -> {n.num_retries.value}")
            if o.retry_on != n.retry_on:
                phrases.append(f"retry on {o.retry_on or '-'} -> {n.retry_on or '-'}")
            if o.per_try_timeout != n.per_try_timeout:
                phrases.append(f"per-try timeout {_dur(o.per_try_timeout)} -> {_dur(n.per_try_timeout)}")
        if oa.prefix_rewrite != na.prefix_rewrite:
            phrases.append(f"path rewrite {oa.prefix_rewrite or '-'} -> {na.prefix_rewrite or '-'}")
        if oa.host_rewrite_literal != na.host_rewrite_literal:
            phrases.append(f"host rewrite {oa.host_rewrite_literal or '-'} -> {na.host_rewrite_literal or '-'}")
        if not phrases and old_route != new_route:
            phrases.append("changed")
        return phrases

    def summarize(self, old: Mapping, new: Mapping, changes: list[ResourceChange]) -> list[str]:
        phrases: list[str] = []

        def add(text: str) -> None:
            if text not in phrases:
                phrases.append(text)

        for c in changes:
            if c.type_url == type_urls.ROUTE:
                before = _routes(old.get(type_urls.ROUTE, {}).get(c.name))
                after = _routes(new.get(type_urls.ROUTE, {}).get(c.name))
                old_hosts = {vh for vh, _ in before}
                new_hosts = {vh for vh, _ in after}
                for vh in sorted(new_hosts - old_hosts):
                    add(f"virtual host {vh} added")
                for vh in sorted(old_hosts - new_hosts):
                    add(f"virtual host {vh} removed")
                for key in sorted(set(before) | set(after)):
                    if key[0] not in old_hosts & new_hosts:
                        continue
                    if key not in after:
                        add(f"{self.route_label(before[key][0], before[key][1], self.old_names)} removed")
                    elif key not in before:
                        add(f"{self.route_label(after[key][0], after[key][1])} added")
                    elif before[key][1] != after[key][1]:
                        label = self.route_label(after[key][0], after[key][1])
                        add(f"{label}: {', '.join(self.route_phrases(before[key][1], after[key][1]))}")
                if before and after and [k for k in before if k in after] != [k for k in after if k in before]:
                    add(f"route order changed in {c.name}")
                if c.change != "changed" and not before and not after:
                    add(f"route configuration {c.name} {c.change}")
                elif c.change in ("added", "removed") and not (old_hosts ^ new_hosts):
                    add(f"route configuration {c.name} {c.change}")
            elif c.type_url == type_urls.CLUSTER:
                label = self.node_label(c.name)
                label = f"cluster {c.name}" if label == c.name else f"cluster of {label} ({c.name})"
                if c.change == "changed":
                    tops = sorted({p.split(".")[0].split("[")[0] for p, _, _ in c.fields})
                    add(f"{label}: {', '.join(tops)} changed")
                else:
                    add(f"{label} {c.change}")
            elif c.type_url == type_urls.ENDPOINT:
                add(f"endpoints of {self.node_label(c.name)} {c.change}")
            elif c.type_url == type_urls.LISTENER:
                if c.change == "changed":
                    tops = sorted({p.split(".")[0].split("[")[0] for p, _, _ in c.fields})
                    add(f"listener {c.name}: {', '.join(tops)} changed")
                else:
                    add(f"listener {c.name} {c.change}")
            else:
                add(f"{c.kind} {c.name} {c.change}")
        return phrases


def _dur(d) -> str:
    from mesh_model.explain.upstream import fmt_duration

    return fmt_duration(d)


def summary_names(old_model, new_model) -> tuple:
    """The App Mesh names of two models, for ``diff_node``/``diff_packed``'s ``names``: built once
    when many nodes of the same two models are diffed (a reload's summary)."""
    return AppMeshNames(old_model), AppMeshNames(new_model)


def diff_node(node_id: str, old: Mapping, new: Mapping, *, old_model=None, new_model=None, mesh: Optional[str] = None,
              node_change: Optional[str] = None, names: Optional[tuple] = None) -> NodeDiff:
    """``names``: ``summary_names(old_model, new_model)``, when many nodes are diffed."""
    changes = diff_resources(old, new)
    summary = _Summarizer(old_model, new_model, mesh, names).summarize(old, new, changes)
    if node_change:
        summary.insert(0, f"node {node_change}")
    return NodeDiff(node_id, changes, summary, node_change)


def node_ids(model) -> list[str]:
    out = []
    for mesh in model.meshes.values():
        out.extend(f"mesh/{mesh.name}/virtualNode/{n}" for n in mesh.virtual_nodes)
        out.extend(f"mesh/{mesh.name}/virtualGateway/{g}" for g in mesh.virtual_gateways)
    return out


def diff_models(old_model, new_model, nodes: Optional[Iterable[str]] = None, placement=None) -> list[NodeDiff]:
    """Every node whose compiled config differs between two models (or only ``nodes``). Pure."""
    from mesh_model.compiler import CompileCache, Placement, compile_node
    from mesh_model.node_id import parse_node_id

    placement = placement or Placement()
    old_ids, new_ids = set(node_ids(old_model)), set(node_ids(new_model))
    wanted = [parse_node_id(n).node_id for n in nodes] if nodes else sorted(old_ids | new_ids)
    old_cache, new_cache = CompileCache(old_model), CompileCache(new_model)
    out = []
    for node_id in wanted:
        node = parse_node_id(node_id)
        if node_id not in old_ids and node_id not in new_ids:
            raise ValueError(f"node {node_id} is in neither model")
        old = compile_node(old_model, node, placement, old_cache) if node_id in old_ids else {}
        new = compile_node(new_model, node, placement, new_cache) if node_id in new_ids else {}
        change = "added" if node_id not in old_ids else "removed" if node_id not in new_ids else None
        result = diff_node(node_id, old, new, old_model=old_model, new_model=new_model, mesh=node.mesh, node_change=change)
        if result.changed:
            out.append(result)
    return out


def render_text(diffs: list[NodeDiff]) -> str:
    if not diffs:
        return "no changes\n"
    summary = "".join(d.summary_line() + "\n" for d in diffs)
    return summary + "\n" + "\n".join(d.text() for d in diffs)


def _unpack(packed: Any) -> Any:
    """A resource as a message: packed ``Any`` values are unpacked (by their type URL)."""
    from google.protobuf import any_pb2, symbol_database

    if not isinstance(packed, any_pb2.Any):
        return packed
    message = symbol_database.Default().GetSymbol(packed.TypeName())()
    packed.Unpack(message)
    return message


def diff_packed(node_id: str, old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]], *,
                old_model=None, new_model=None, mesh: Optional[str] = None, names: Optional[tuple] = None) -> NodeDiff:
    """``diff_node`` for two snapshots of packed resources (``type_url -> name -> Any``), cheaply.

    Only resources whose bytes differ are unpacked and compared; identical ones are skipped, so a
    change to one route of a node with hundreds of clusters costs one route's diff. Used by the
    server to log what a reload did to each node.
    """
    def value(resource: Any) -> Any:
        return getattr(resource, "value", resource)

    old_changed: dict[str, dict[str, Any]] = {}
    new_changed: dict[str, dict[str, Any]] = {}
    for type_url in set(old) | set(new):
        before, after = old.get(type_url) or {}, new.get(type_url) or {}
        for name in set(before) | set(after):
            b, a = before.get(name), after.get(name)
            if b is not None and a is not None and value(b) == value(a):
                continue
            if b is not None:
                old_changed.setdefault(type_url, {})[name] = _unpack(b)
            if a is not None:
                new_changed.setdefault(type_url, {})[name] = _unpack(a)
    return diff_node(node_id, old_changed, new_changed, old_model=old_model, new_model=new_model, mesh=mesh, names=names)

