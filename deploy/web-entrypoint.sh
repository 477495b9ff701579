#!/bin/sh
# The web container's command: render nginx.conf from the environment with the renderer
# `make run` uses (deploy/nginx.py, compose variant), then run nginx in the foreground as
# PID 1 so that `docker compose stop` reaches it. A bad setting stops here, named.
set -eu
cd /app
python3 -m deploy.nginx --variant compose --output /etc/nginx/nginx.conf
exec nginx -g 'daemon off;'
