# Sourced by scripts/bench and scripts/bench_apply (not run on its own).
#
#   start_supervisor NAME
#
# Starts `$B serve` (B: the bulkhead binary) in a fresh temp dir
# /tmp/NAME-XXXX on loopback, its log in $dir/serve.log, and waits until it
# answers. Sets dir, serve_pid and BULKHEAD_SOCKET; on exit the supervisor
# is stopped and the dir removed.
start_supervisor() {
  dir=$(mktemp -d "/tmp/$1-XXXX"); chmod 711 "$dir"
  cat > "$dir/config.toml" <<CFG
state_dir = "$dir/state"
run_dir = "$dir/run"
sip_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
advertise = "127.0.0.1"
[tenant_bind]
sip = "127.0.0.1"
http = "127.0.0.1"
CFG
  export BULKHEAD_SOCKET=$dir/run/admin.sock
  "$B" serve --config "$dir/config.toml" 2> "$dir/serve.log" &
  serve_pid=$!
  trap 'kill $serve_pid 2>/dev/null || true; wait $serve_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
  for _ in $(seq 100); do "$B" status >/dev/null 2>&1 && break; sleep 0.05; done
}
