#!/bin/sh
# Docker HEALTHCHECK for every role of the imgidx image (deploy/Dockerfile).
# `api` and `serve` answer GET /health: 200 only while RabbitMQ, the job store
# and the vector store all answer. `worker` and `aggregator` serve no HTTP;
# their health is their process, which Docker already watches, so they pass.
#
# The role and a `--listen` flag are read from the container's command line
# (PID 1, or behind `docker run --init`); the port otherwise comes from
# IMGIDX__API__LISTEN, else 8000. The check connects to 127.0.0.1, so listen on
# 0.0.0.0 or 127.0.0.1 (the image sets IMGIDX__API__LISTEN=0.0.0.0:8000).
set -eu

cmdline=${IMGIDX_HEALTHCHECK_CMDLINE:-/proc/1/cmdline}
listen=${IMGIDX__API__LISTEN:-0.0.0.0:8000}
role=
want_listen=0
nl='
'
IFS=$nl
for arg in $(tr '\0' '\n' <"$cmdline"); do
    if [ "$want_listen" = 1 ]; then
        listen=$arg
        want_listen=0
        continue
    fi
    case $arg in
        --listen) want_listen=1 ;;
        --listen=*) listen=${arg#--listen=} ;;
        api | serve | worker | aggregator) [ -n "$role" ] || role=$arg ;;
    esac
done

case $role in
    api | serve) ;;
    *) exit 0 ;;
esac

port=${listen##*:}
exec curl --fail --silent --show-error --max-time 4 --output /dev/null "http://127.0.0.1:$port/health"
