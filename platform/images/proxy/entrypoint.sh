#!/bin/sh
# Write nginx's configuration from the environment and run it in the foreground.
#   SCANBENCH_PROXY_MAX_BODY   largest request body (default 2g, as SCANBENCH_MAX_UPLOAD_BYTES)
#   SCANBENCH_PROXY_UPSTREAM   the web process (default web:8000)
#   SCANBENCH_DATA_ACCEL_PREFIX the internal location of data downloads (default /protected-data/)
#   SCANBENCH_PROXY_HTTPS_PORT the HTTPS port published on the host, for redirects (default 443)
#   TLS: /etc/scanbench/tls/fullchain.pem and privkey.pem when mounted; otherwise a self-signed
#   certificate is made at start (for a first look only: mount a real one in production).
set -eu
run=/run/scanbench-proxy
cert=/etc/scanbench/tls/fullchain.pem
key=/etc/scanbench/tls/privkey.pem
if [ ! -r "$cert" ] || [ ! -r "$key" ]; then
    cert=$run/self-signed.pem
    key=$run/self-signed.key
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=${SCANBENCH_PROXY_HOSTNAME:-localhost}" \
        -keyout "$key" -out "$cert" 2>/dev/null
    echo "scanbench-proxy: no certificate mounted at /etc/scanbench/tls; using a self-signed one" >&2
fi
prefix=${SCANBENCH_DATA_ACCEL_PREFIX:-/protected-data/}
# Where plain HTTP is sent: the HTTPS port the host publishes (443 is left out of the address).
port=${SCANBENCH_PROXY_HTTPS_PORT:-443}
if [ "$port" = 443 ]; then https_port=""; else https_port=":$port"; fi
sed -e "s|__MAX_BODY__|${SCANBENCH_PROXY_MAX_BODY:-2g}|g" \
    -e "s|__UPSTREAM__|${SCANBENCH_PROXY_UPSTREAM:-web:8000}|g" \
    -e "s|__ACCEL_PREFIX__|/${prefix#/}|g" \
    -e "s|__HTTPS_PORT__|$https_port|g" \
    -e "s|__CERT__|$cert|g" -e "s|__KEY__|$key|g" \
    /etc/scanbench/nginx.conf.in >"$run/nginx.conf"
nginx -t -q -c "$run/nginx.conf"
exec nginx -c "$run/nginx.conf" -g "daemon off;"
