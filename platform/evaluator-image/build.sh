#!/bin/sh
# Build the Scanbench evaluator base image without any container registry.
#
#   platform/evaluator-image/build.sh            # build if missing, print the tag
#   PYTHON=.venv/bin/python platform/evaluator-image/build.sh
#
# 1. debootstrap a minimal Debian bookworm root file system (python3 from Debian's packages);
# 2. install NumPy, nibabel, Pillow, PyTorch (CPU) and onnxruntime into it from wheels, using the
#    host's Python 3.11 pip (so no network is ever needed inside the chroot);
# 3. harden it (no setuid/setgid files, no apt caches) and keep it as a directory, which the
#    bubblewrap backend uses as its root;
# 4. if a Docker engine answers, `docker import` it as scanbench/evaluator-base:<recipe hash>.
#
# The tag is the first 16 hex digits of the sha256 of this recipe (this script, the package list and
# the requirements), so a changed recipe gives a new tag and an unchanged one is never rebuilt.
# evaluator/sandbox/image.py computes the same hash; keep the two in step.
#
# Environment: PYTHON (a CPython 3.11 with pip; default python3), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), SCANBENCH_IMAGE_CACHE (where root file systems are kept; default
# /var/cache/scanbench/evaluator-image for root, else $XDG_CACHE_HOME/scanbench/evaluator-image),
# SCANBENCH_SKIP_DOCKER=1 (root file system only).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The root file system must be reachable by uid 65534 (bubblewrap runs as that user when the
# worker is root), so root keeps it under /var/cache rather than in its 0700 home.
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/scanbench/evaluator-image
else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/scanbench/evaluator-image; fi
cache=${SCANBENCH_IMAGE_CACHE:-$default_cache}

hash=$(cd "$here" && for f in build.sh debian-packages.txt requirements.txt; do
    printf '%s\0' "$f"; cat "$f"; done | sha256sum | cut -c1-16)
tag="scanbench/evaluator-base:$hash"
rootfs="$cache/rootfs-$hash"

have_docker() { [ "${SCANBENCH_SKIP_DOCKER:-0}" != 1 ] && docker version >/dev/null 2>&1; }

if [ -f "$rootfs/.scanbench-recipe" ] && { ! have_docker || docker image inspect "$tag" >/dev/null 2>&1; }; then
    echo "$tag"
    exit 0
fi

if [ ! -f "$rootfs/.scanbench-recipe" ]; then
    [ "$(id -u)" = 0 ] || { echo "build.sh: debootstrap needs root" >&2; exit 1; }
    "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "need CPython 3.11 (Debian bookworm python3)"'
    mkdir -p "$cache"
    chmod 755 "$cache"
    work=$(mktemp -d "$cache/build-$hash.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    packages=$(grep -v '^#' "$here/debian-packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
    echo "debootstrap bookworm ($packages) from $mirror" >&2
    debootstrap --variant=minbase --include="$packages" bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
    echo "pip install into the root file system" >&2
    # --target with the host's 3.11 pip: wheels only, compiled .pyc included (the root is read-only
    # at run time, so byte-code must be there already or every start recompiles PyTorch).
    "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --only-binary=:all: --target "$work/root/usr/local/lib/python3.11/dist-packages" \
        -r "$here/requirements.txt"
    rm -rf "$work/root/usr/local/lib/python3.11/dist-packages/bin" \
        "$work/root/var/cache/apt"/* "$work/root/var/lib/apt/lists"/* \
        "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work/root/usr/share/locale"
    # Nothing in the sandbox may gain privileges through a file mode.
    find "$work/root" -xdev -type f -perm /6000 -exec chmod ug-s {} +
    # An empty, world-writable-free skeleton for the mount points the backends use.
    mkdir -p "$work/root/input" "$work/root/output" "$work/root/reference" "$work/root/opt/scanbench"
    chmod 755 "$work/root/input" "$work/root/output" "$work/root/reference"
    # Codabench's layout, for organizers' programs that write /app/... paths into their own code
    # (the metadata command is translated; these links cover the rest). Each points at where
    # the sandbox mounts that folder, and dangles in runs that do not mount it.
    mkdir -p "$work/root/app"
    ln -s /opt/program "$work/root/app/program"
    ln -s /opt/input "$work/root/app/input"
    ln -s /output "$work/root/app/output"
    ln -s /input "$work/root/app/input_data"
    ln -s /opt/ingested_program "$work/root/app/ingested_program"
    ln -s /tmp/shared "$work/root/app/shared"
    printf '%s\n' "$hash" >"$work/root/.scanbench-recipe"
    rm -rf "$rootfs"
    chmod 755 "$work/root"
    mv "$work/root" "$rootfs"
fi

if have_docker && ! docker image inspect "$tag" >/dev/null 2>&1; then
    echo "docker import $tag" >&2
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change 'USER 65534:65534' \
        --change 'WORKDIR /tmp' \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 HOME=/tmp' \
        --change 'CMD ["python3"]' \
        --message "scanbench evaluator base, recipe $hash" - "$tag" >/dev/null
fi
echo "$tag"
