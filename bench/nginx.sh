# nginx.sh -- sourced by the HTTP benchmarks: the nginx baseline, one worker, serving the files
# of "$tmp/www" on 127.0.0.1:$1. Sets nginx_pid (the caller's cleanup kills it) and returns once
# nginx answers 200 for the path $2, or fails: a baseline that answers anything else is void.
start_nginx() {
  local port=$1 probe=$2
  mkdir -p "$tmp/www" "$tmp/logs"
  cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  server { listen 127.0.0.1:$port; root $tmp/www; }
}
CONF
  # nginx's workers drop root for nobody: they must be able to read the files (mktemp -d is 0700).
  chmod 755 "$tmp" "$tmp/www"
  chmod 644 "$tmp"/www/*
  nginx -p "$tmp" -c "$tmp/nginx.conf" &
  nginx_pid=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port$probe" >/dev/null && return 0
    sleep 0.05
  done
  curl -fs "http://127.0.0.1:$port$probe" >/dev/null
}
