#!/bin/sh
# Build Scanbench's production images here, without any container registry.
#
#   platform/images/build.sh          # build what is missing, print the tags
#
# 1. debootstrap a minimal Debian bookworm root file system with the packages in
#    debian-packages.txt and `docker import` it as scanbench/debian:<recipe hash> (also tagged
#    scanbench/debian:bookworm-local), cached by the hash of this recipe;
# 2. install requirements.txt into a folder with the host's CPython 3.11 pip (wheels only, the same
#    ABI as bookworm's python3) and add it as one layer: scanbench/app-deps:<requirements hash>;
# 3. `docker build` the four images of the stack FROM those, with the same Dockerfiles a machine
#    with a registry uses FROM python:3.11-slim / debian:bookworm-slim (docker-compose.yml):
#    scanbench/app, scanbench/postgres:local, scanbench/redis:local, scanbench/proxy:local.
#
# Environment: PYTHON (CPython 3.11 with pip; default python3), DEBIAN_MIRROR,
# SCANBENCH_IMAGE_CACHE (where root file systems are kept, as for platform/evaluator-image).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/scanbench/platform-image
else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/scanbench/platform-image; fi
cache=${SCANBENCH_IMAGE_CACHE:-$default_cache}
export DOCKER_BUILDKIT=0

# Run a command quietly; show its output only when it fails.
quiet() {
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; echo "build.sh: failed: $*" >&2; return 1; }
}

docker version >/dev/null 2>&1 || { echo "build.sh: no Docker engine answers" >&2; exit 1; }

# --- 1. the Debian base -----------------------------------------------------------------------
hash=$(cd "$here" && for f in build.sh debian-packages.txt; do
    printf '%s\0' "$f"; cat "$f"; done | sha256sum | cut -c1-16)
base="scanbench/debian:$hash"
if ! docker image inspect "$base" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "build.sh: debootstrap needs root" >&2; exit 1; }
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/build-$hash.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    packages=$(grep -v '^#' "$here/debian-packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
    echo "debootstrap bookworm ($packages) from $mirror" >&2
    debootstrap --variant=minbase --include="$packages" bookworm "$work/root" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
    # The packages' own default cluster and configuration are not used: each image brings its own.
    rm -rf "$work/root/var/lib/postgresql/15/main" "$work/root/etc/postgresql/15/main" \
        "$work/root/var/cache/apt"/* "$work/root/var/lib/apt/lists"/* \
        "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work/root/usr/share/locale"
    find "$work/root" -xdev -type f -perm /6000 -exec chmod ug-s {} +
    ln -sf /usr/bin/python3 "$work/root/usr/local/bin/python"
    echo "docker import $base" >&2
    tar -C "$work/root" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        --change 'CMD ["/bin/sh"]' \
        --message "scanbench debian base, recipe $hash" - "$base" >/dev/null
    rm -rf "$work"
    trap - EXIT
fi
docker tag "$base" scanbench/debian:bookworm-local

# --- 2. the Python dependencies, one layer ---------------------------------------------------
reqhash=$( { cat "$repo/requirements.txt"; printf '%s' "$base"; } | sha256sum | cut -c1-16)
deps="scanbench/app-deps:$reqhash"
if ! docker image inspect "$deps" >/dev/null 2>&1; then
    "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "need CPython 3.11"'
    site=$(mktemp -d "${TMPDIR:-/tmp}/scanbench-site.XXXXXX")
    # Environment markers are evaluated for the image's interpreter (bookworm's 3.11.2 needs
    # packages, such as async-timeout, that a newer 3.11 on the host does not).
    version=$(docker run --rm --network none "$base" python3 -c 'import platform; print(platform.python_version())')
    echo "pip install requirements.txt for $deps (python $version)" >&2
    "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --only-binary=:all: --python-version "$version" --implementation cp \
        --target "$site/dist-packages" -r "$repo/requirements.txt"
    # Console scripts: pip writes them with the host's interpreter path; the image's own call
    # bookworm's python3 instead.
    rm -rf "$site/dist-packages/bin"
    mkdir -p "$site/bin"
    for tool in gunicorn celery; do
        printf '#!/bin/sh\nexec python3 -m %s "$@"\n' "$tool" >"$site/bin/$tool"
        chmod 755 "$site/bin/$tool"
    done
    quiet docker build -t "$deps" --build-arg BASE="$base" -f "$here/deps.Dockerfile" "$site"
    rm -rf "$site"
fi

# --- 3. the four images ---------------------------------------------------------------------
quiet docker build -t scanbench/app:latest --build-arg BASE="$deps" -f "$repo/platform/Dockerfile" "$repo"
for role in postgres redis proxy; do
    quiet docker build -t "scanbench/$role:local" --build-arg BASE=scanbench/debian:bookworm-local "$here/$role"
done
echo scanbench/app:latest scanbench/postgres:local scanbench/redis:local scanbench/proxy:local
