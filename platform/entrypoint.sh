#!/bin/sh
# Entry point of the app image: create the storage folders this container is given (as the app's
# user, before anything else can create them as root), then run the command.
set -eu
for dir in "${SCANBENCH_VAR_DIR:-}" "${SCANBENCH_VAR_DIR:+$SCANBENCH_VAR_DIR/data}" \
    "${SCANBENCH_VAR_DIR:+$SCANBENCH_VAR_DIR/static}" "${MEDIA_ROOT:-}" \
    "${SCANBENCH_PRIVATE_ROOT:-}" "${TMPDIR:-}"; do
    [ -n "$dir" ] && mkdir -p "$dir"
done
# Sandbox scratch folders are mounted by uid 65534: the folder must be searchable by others.
[ -n "${TMPDIR:-}" ] && chmod 711 "$TMPDIR" 2>/dev/null || true
exec "$@"
