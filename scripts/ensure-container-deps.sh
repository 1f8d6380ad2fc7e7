#!/bin/sh
# Install the tools the container stage needs (tests/containers/, make demo-containers):
#   podman           runs the images (there is no Docker engine on these machines)
#   runc             podman's OCI runtime here: crun 1.8 refuses the hybrid cgroup v1/v2 layout
#                    these machines have ("cgroups in hybrid mode not supported");
#                    compose/containers.conf selects runc
#   netavark, aardvark-dns   podman's bridge networks and name resolution between containers
#   mmdebstrap       builds the local Debian base image when no registry is used
#   iptables         the host side of podman's networks
# and, in a venv of their own (not the project's: they are tools, not dependencies):
#   podman-compose 1.6.0  Debian's podman-compose 1.0.3 cannot run `network_mode: service:<app>`
#                         (it passes it to podman verbatim, next to a --net flag: podman refuses)
#   check-jsonschema      ships the compose-spec JSON schema (vendor.compose-spec)
# The venv is $MESHPLANE_CONTAINER_TOOLS (default ~/.cache/meshplane/container-tools); its
# bin/ holds podman-compose and check-jsonschema.
# Idempotent and quiet: does nothing when every tool is there. Installs with apt-get only when
# something is missing and we are root on a system with apt-get; otherwise says what is missing
# and exits 0, so the tests fail with the same clear message (they never skip).
set -eu

. "$(dirname "$0")/apt-need.sh"

need podman podman
need runc runc
need mmdebstrap mmdebstrap
need iptables iptables
# podman 4.3's default network stack on Debian: netavark + aardvark-dns (name resolution
# between containers of one network)
[ -x /usr/lib/podman/netavark ] || need /usr/lib/podman/netavark netavark
[ -x /usr/lib/podman/aardvark-dns ] || need /usr/lib/podman/aardvark-dns aardvark-dns

home=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
tools=${MESHPLANE_CONTAINER_TOOLS:-${XDG_CACHE_HOME:-$home/.cache}/meshplane/container-tools}
tool_pins="podman-compose==1.6.0 check-jsonschema==0.39.0"

install_tools() {
    [ "$(cat "$tools/pins" 2>/dev/null)" = "$tool_pins" ] && return 0
    echo "ensure-container-deps: installing $tool_pins in $tools" >&2
    log=$(mktemp)
    # shellcheck disable=SC2086 # word splitting of the pins is intended
    if ! { rm -rf "$tools" && python3 -m venv "$tools" && "$tools/bin/pip" install -q --disable-pip-version-check $tool_pins; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "ensure-container-deps: installing $tool_pins failed" >&2
        exit 1
    fi
    rm -f "$log"
    echo "$tool_pins" >"$tools/pins"
}

apt_install ensure-container-deps "the container tests fail without them"
install_tools
