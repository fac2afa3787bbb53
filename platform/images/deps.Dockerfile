# Python dependencies of the platform on the Debian base (platform/images/build.sh): the folder
# pip filled on the host becomes bookworm python3's dist-packages, in one layer.
ARG BASE
FROM ${BASE}
COPY dist-packages /usr/local/lib/python3.11/dist-packages
COPY bin /usr/local/bin
