# Sourced by the ensure-*-deps.sh scripts: collect missing Debian packages, install them.
#   need TOOL PACKAGE       remember PACKAGE when TOOL is not on PATH
#   apt_install WHO WHY     install what was remembered (root + apt-get), else say what is
#                           missing and WHY it matters, and return 0: the tests then fail with
#                           the same clear message (they never skip)
missing_packages=""
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        case " $missing_packages " in
            *" $2 "*) ;;
            *) missing_packages="$missing_packages $2" ;;
        esac
    fi
}

# root's tools live in sbin; make sure a non-login PATH still finds them
PATH="$PATH:/usr/sbin:/sbin"
export PATH

apt_install() {
    [ -z "$missing_packages" ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$1: missing:$missing_packages (install them as root; $2)" >&2
        return 0
    fi
    echo "$1: installing$missing_packages" >&2
    log=$(mktemp)
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing_packages; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "$1: installing$missing_packages failed" >&2
        exit 1
    fi
    rm -f "$log"
}
