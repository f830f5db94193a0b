#!/usr/bin/env bash
# Puts the containerd releases the e2e matrix runs against into .tools/containerd, and prints
# the directory holding each one's `containerd` and `ctr`, one line per series asked for:
#
#     scripts/fetch-containerd.sh 1.6 1.7 2.x
#
#   1.6  Debian bookworm's, installed by scripts/test.sh: /usr/bin
#   1.7  Debian trixie's containerd package
#   2.x  Debian forky's containerd package (its CRI pulls through the transfer service)
#
# The .debs come from Debian's own archive through apt, with an apt state of its own (sources,
# lists, status, cache all under .tools/containerd/apt), so the machine's packages stay as they
# were; `dpkg-deb -x` unpacks them and the binaries run from there (they need only libc).
#
# The versions the tests were last run against are pinned below. A suite moves (forky is
# Debian testing, trixie gets point releases): when the archive offers a newer version of a
# series, that version is used and a NOTICE says so on stderr; it is not a failure. Update the
# pin once the suite passes on it. Idempotent: with the pinned version unpacked, only prints.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A SUITE=([1.7]=trixie [2.x]=forky)
declare -A PIN=([1.7]="1.7.24~ds1-6+deb13u1" [2.x]="2.1.9+ds1-5")
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

dest="$PWD/.tools/containerd"
state="$dest/apt"

notice() { echo "NOTICE: $*" >&2; }

apt_opts() {
    printf '%s\n' \
        -o "Dir::Etc::SourceList=$state/sources.list" \
        -o "Dir::Etc::SourceParts=/dev/null" \
        -o "Dir::State::Lists=$state/lists" \
        -o "Dir::State::status=$state/status" \
        -o "Dir::Cache=$state/cache" \
        -o "APT::Sandbox::User=root" \
        -o "Debug::NoLocking=1"
}

# The Debian mirror this machine's apt already uses: the one serving its release (no suffix).
mirror() {
    apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' |
        awk '$2 !~ /-/ { print $1; exit }'
}

update_lists() {
    [ -n "${lists_fresh:-}" ] && return
    local uri
    uri=$(mirror)
    if [ -z "$uri" ]; then
        echo "fetch-containerd: no Debian mirror in this machine's apt sources" >&2
        return 1
    fi
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
    : >"$state/status"
    {
        echo "deb [signed-by=$KEYRING] $uri trixie main"
        echo "deb [signed-by=$KEYRING] $uri forky main"
    } >"$state/sources.list"
    mapfile -t opts < <(apt_opts)
    apt-get "${opts[@]}" -qq update >&2
    lists_fresh=1
}

# The newest version of containerd in one suite, from our own lists.
candidate() {
    mapfile -t opts < <(apt_opts)
    apt-cache "${opts[@]}" madison containerd | awk -v s="$1/" '$0 ~ s { print $3; exit }'
}

unpacked() { # version -> the dir with its binaries, if unpacked already
    local dir="$dest/$1/usr/bin"
    [ -x "$dir/containerd" ] && [ -x "$dir/ctr" ] && echo "$dir"
}

fetch() { # series -> prints the bin dir
    local series=$1 suite=${SUITE[$1]} pin=${PIN[$1]} version dir
    update_lists
    version=$(candidate "$suite")
    if [ -z "$version" ]; then
        echo "fetch-containerd: $suite has no containerd package" >&2
        return 1
    fi
    if [ "$version" != "$pin" ]; then
        if dpkg --compare-versions "$version" gt "$pin"; then
            notice "containerd $series: Debian $suite now has $version; the tests were last run on $pin. Using $version; update PIN in $0 once the suite passes on it."
        else
            notice "containerd $series: Debian $suite has $version, older than the pinned $pin. Using $version."
        fi
    fi
    if dir=$(unpacked "$version"); then
        echo "$dir"
        return
    fi
    local work
    work=$(mktemp -d)
    mapfile -t opts < <(apt_opts)
    (cd "$work" && apt-get "${opts[@]}" -qq download "containerd=$version" >&2)
    rm -rf "$dest/$version.tmp"
    dpkg-deb -x "$work"/containerd_*.deb "$dest/$version.tmp"
    rm -rf "$work" "$dest/$version"
    mv "$dest/$version.tmp" "$dest/$version"
    unpacked "$version"
}

if [ $# -eq 0 ]; then
    set -- 1.6 1.7 2.x
fi
for series in "$@"; do
    case "$series" in
    1.6)
        # bookworm's, from the machine's own apt (scripts/test.sh installs it)
        if ! /usr/bin/containerd --version 2>/dev/null | grep -q ' 1\.6\.'; then
            echo "fetch-containerd: /usr/bin/containerd is not 1.6 (apt-get install containerd on bookworm)" >&2
            exit 1
        fi
        echo /usr/bin
        ;;
    1.7 | 2.x)
        # A cached unpack of the pin answers without touching the network.
        if [ -z "${PULLTRACE_CONTAINERD_REFRESH:-}" ] && dir=$(unpacked "${PIN[$series]}"); then
            echo "$dir"
        else
            fetch "$series"
        fi
        ;;
    *)
        echo "fetch-containerd: unknown series '$series' (1.6, 1.7 or 2.x)" >&2
        exit 2
        ;;
    esac
done
