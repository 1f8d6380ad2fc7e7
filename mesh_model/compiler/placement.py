"""Where one Envoy instance listens and where its app listens.

These are per-instance facts, not part of the mesh model: they travel in Envoy's
``node.metadata["meshplane"]`` (written by ``meshplane bootstrap``), so one virtual node can
run as many instances with different addresses. Two data paths, chosen per instance:

* transparent (App Mesh's): iptables sends inbound traffic to ``ingress_port`` (15000) and
  outbound to ``egress_port`` (15001); listeners use the original destination port.
* explicit: Envoy listens on ``ingress_address:<listener port>`` for each virtual-node
  listener, forwards to ``app_address:<listener port>``, and listens on
  ``egress_address:<backend port>`` for every backend port (and ``egress_port``).

An instance may also have a tracer (``tracing``: ``node.metadata.meshplane.tracing``, see
``tracing.py``); its HTTP connection managers then carry a ``tracing`` block.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from mesh_model.compiler import tracing

METADATA_KEY = "meshplane"


@dataclass(frozen=True, order=True)
class Placement:
    explicit: bool = False
    ingress_address: str = "0.0.0.0"
    app_address: str = "127.0.0.1"
    egress_address: str = "0.0.0.0"
    ingress_port: int = 15000
    egress_port: int = 15001
    tracing: str = ""  # canonical JSON of the tracer (tracing.canonical), "" for none

    def __post_init__(self) -> None:
        for field in ("ingress_address", "app_address", "egress_address"):
            ipaddress.ip_address(getattr(self, field))  # ValueError names the bad value
        for field in ("ingress_port", "egress_port"):
            value = getattr(self, field)
            if not 1 <= value <= 65535:
                raise ValueError(f"{field} must be 1..65535, got {value}")
        if self.explicit and self.ingress_address == self.egress_address:
            raise ValueError("the explicit data path needs distinct ingress and egress addresses "
                             f"(both are {self.ingress_address}): a backend port could collide with a listener port")
        if self.tracing:
            object.__setattr__(self, "tracing", tracing.canonical(json.loads(self.tracing)))  # ValueError names the field

    @property
    def key(self) -> str:
        """A canonical string: equal placements share one snapshot."""
        mode = "explicit" if self.explicit else "transparent"
        key = f"{mode},{self.ingress_address}:{self.ingress_port},{self.app_address},{self.egress_address}:{self.egress_port}"
        return f"{key},tracing={self.tracing}" if self.tracing else key

    def to_metadata(self) -> dict[str, Any]:
        data = asdict(self)
        metadata = {
            "mode": "explicit" if data.pop("explicit") else "transparent",
            "ingressAddress": data["ingress_address"],
            "appAddress": data["app_address"],
            "egressAddress": data["egress_address"],
            "ingressPort": data["ingress_port"],
            "egressPort": data["egress_port"],
        }
        if self.tracing:
            metadata["tracing"] = json.loads(self.tracing)
        return metadata

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> "Placement":
        """Read ``node.metadata["meshplane"]`` (a plain dict); absent means App Mesh's defaults."""
        section = (metadata or {}).get(METADATA_KEY) or {}
        if not isinstance(section, Mapping):
            raise ValueError(f"node.metadata.{METADATA_KEY} must be a mapping")
        mode = section.get("mode", "transparent")
        if mode not in ("explicit", "transparent"):
            raise ValueError(f"node.metadata.{METADATA_KEY}.mode must be explicit or transparent, got {mode!r}")
        defaults = cls()
        return cls(
            explicit=mode == "explicit",
            ingress_address=str(section.get("ingressAddress", defaults.ingress_address)),
            app_address=str(section.get("appAddress", defaults.app_address)),
            egress_address=str(section.get("egressAddress", defaults.egress_address)),
            ingress_port=int(section.get("ingressPort", defaults.ingress_port)),
            egress_port=int(section.get("egressPort", defaults.egress_port)),
            tracing=tracing.canonical(section.get("tracing")),
        )
