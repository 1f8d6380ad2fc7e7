"""App Mesh resource kinds on the wire: identity from request parameters, ARNs, and the
``*Data`` (describe) / ``*Ref`` (list) answers built from a ``StoredResource``.

ARNs: ``arn:aws:appmesh:<region>:<mesh owner>:mesh/<mesh>``, ``.../mesh/<mesh>/virtualNode/<name>``,
``.../mesh/<mesh>/virtualRouter/<router>/route/<name>``,
``.../mesh/<mesh>/virtualGateway/<gateway>/gatewayRoute/<name>``.
"""
from __future__ import annotations

from dataclasses import dataclass

from mesh_model.spec import kinds
from xds_server.api.errors import bad_request
from xds_server.store.base import ResourceKey, StoredResource


@dataclass(frozen=True)
class KindInfo:
    kind: str
    member: str  # output payload member and ARN segment: "virtualNode"
    name_param: str  # "virtualNodeName"
    list_member: str  # "virtualNodes"
    parent_kind: str = ""  # "VirtualRouter" for Route, "VirtualGateway" for GatewayRoute
    parent_param: str = ""  # "virtualRouterName"
    parent_member: str = ""  # "virtualRouter" (ARN segment)


def _info(kind: kinds.Kind) -> KindInfo:
    parent = kinds.parent_of(kind)
    return KindInfo(kind.name, kind.member, kind.name_param, kind.list_member, kind.parent,
                    parent.name_param if parent else "", parent.member if parent else "")


KINDS: dict[str, KindInfo] = {kind.name: _info(kind) for kind in kinds.APP_MESH}  # the App Mesh operations' kinds
_BY_MEMBER = {k.member: k for k in KINDS.values()}


def key_of(kind: str, params: dict) -> ResourceKey:
    info = KINDS[kind]
    if kind == "Mesh":
        return ResourceKey("Mesh", params["meshName"], "", params["meshName"])
    return ResourceKey(kind, params["meshName"], params.get(info.parent_param, "") if info.parent_param else "",
                       params[info.name_param])


UNREACHABLE_NAMES = (".", "..")


def check_new_name(key: ResourceKey) -> None:
    """``BadRequestException`` for a name no signed request could reach again: ``.`` and ``..``
    are path segments that every SigV4 client and verifier normalize away, so a resource so
    named could be created but never described, updated or deleted (nor its mesh deleted)."""
    for what, value in (("mesh name", key.mesh), ("parent name", key.parent), ("name", key.name)):
        if value in UNREACHABLE_NAMES:
            raise bad_request(f"{key.kind} {what} {value!r}: '.' and '..' cannot be resource names "
                              "(URL paths normalize them away, so the resource could never be reached again)")


def parent_key(key: ResourceKey) -> ResourceKey | None:
    """The resource that must exist for ``key`` to be created (its mesh, router or gateway)."""
    if key.kind == "Mesh":
        return None
    info = KINDS[key.kind]
    if info.parent_kind:
        return ResourceKey(info.parent_kind, key.mesh, "", key.parent)
    return ResourceKey("Mesh", key.mesh, "", key.mesh)


def arn(key: ResourceKey, region: str, account: str) -> str:
    path = f"mesh/{key.mesh}"
    if key.kind != "Mesh":
        info = KINDS[key.kind]
        if info.parent_kind:
            path += f"/{info.parent_member}/{key.parent}"
        path += f"/{info.member}/{key.name}"
    return f"arn:aws:appmesh:{region}:{account}:{path}"


def parse_arn(text: str) -> ResourceKey:
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "appmesh":
        raise bad_request(f"resourceArn: {text!r} is not an App Mesh ARN (arn:aws:appmesh:REGION:ACCOUNT:mesh/...)")
    segs = parts[5].split("/")
    if len(segs) < 2 or segs[0] != "mesh" or not segs[1]:
        raise bad_request(f"resourceArn: {text!r} does not name a mesh resource")
    mesh = segs[1]
    rest = segs[2:]
    if not rest:
        return ResourceKey("Mesh", mesh, "", mesh)
    if len(rest) == 2 and rest[0] in _BY_MEMBER and not _BY_MEMBER[rest[0]].parent_kind and rest[0] != "mesh":
        return ResourceKey(_BY_MEMBER[rest[0]].kind, mesh, "", rest[1])
    if len(rest) == 4:
        for info in KINDS.values():
            if info.parent_kind and rest[0] == info.parent_member and rest[2] == info.member:
                return ResourceKey(info.kind, mesh, rest[1], rest[3])
    raise bad_request(f"resourceArn: {text!r} does not name an App Mesh resource")


def metadata(res: StoredResource, region: str) -> dict:
    md = res.metadata
    owner = md.get("meshOwner", "")
    return {
        "arn": arn(res.key, region, owner),
        "createdAt": md.get("createdAt", 0.0),
        "lastUpdatedAt": md.get("lastUpdatedAt", 0.0),
        "meshOwner": owner,
        "resourceOwner": md.get("resourceOwner", owner),
        "uid": md.get("uid", ""),
        "version": res.version,
    }


def _names(res: StoredResource) -> dict:
    info = KINDS[res.key.kind]
    names = {"meshName": res.key.mesh}
    if res.key.kind != "Mesh":
        names[info.name_param] = res.key.name
    if info.parent_param:
        names[info.parent_param] = res.key.parent
    return names


def data(res: StoredResource, region: str, status: str = "ACTIVE") -> dict:
    """The ``<Kind>Data`` shape (what Create/Describe/Update/Delete answer)."""
    return {**_names(res), "metadata": metadata(res, region), "spec": res.spec, "status": {"status": status}}


def ref(res: StoredResource, region: str) -> dict:
    """The ``<Kind>Ref`` shape (one item of a List answer)."""
    md = metadata(res, region)
    md.pop("uid")
    return {**_names(res), **md}


def native(res: StoredResource) -> dict:
    """The native YAML/JSON document of a stored resource (``kind``, ``mesh``, ``name``, ``spec``...)."""
    k = res.key
    doc: dict = {"kind": k.kind}
    if k.kind == "CloudMapService":
        doc["namespaceName"] = k.parent
    elif k.kind != "Mesh":
        doc["mesh"] = k.mesh
    if k.kind == "Route":
        doc["virtualRouter"] = k.parent
    elif k.kind == "GatewayRoute":
        doc["virtualGateway"] = k.parent
    doc["name"] = k.name
    doc["spec"] = res.spec
    return doc


def key_of_native(doc: dict) -> ResourceKey:
    kind = doc.get("kind", "")
    name = doc.get("name", "")
    if kind == "Mesh":
        return ResourceKey("Mesh", name, "", name)
    if kind == "CloudMapService":
        return ResourceKey(kind, "", doc.get("namespaceName", ""), name)
    parent = doc.get("virtualRouter", "") if kind == "Route" else doc.get("virtualGateway", "") if kind == "GatewayRoute" else ""
    return ResourceKey(kind, doc.get("mesh", ""), parent, name)
