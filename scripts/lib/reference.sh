# Sourced by scripts/bench, scripts/bench_sweep and scripts/bench_timeline
# (not run on its own).
#
#   start_reference
#
# The issue's capacity reference, beside Bulkhead in the same run: sipp's
# own UAS on a loopback port, and Kamailio 5.6 (Debian) forwarding
# statelessly, one child, to that UAS. Needs $dir (start_supervisor's).
# Sets uas_port, kam_port and the two pids, uas and kam; on exit both are
# stopped along with the supervisor.
start_reference() {
  uas_port=$((10000 + RANDOM % 9000))
  kam_port=$((uas_port + 1))
  # Socket buffers of 4 MiB (this machine's rmem_max): with sipp's 64 KiB
  # default the UAS itself drops datagrams in a 10,000/s burst, and every
  # lost one cost a call 32 s of retransmissions, which made the reference
  # the slowest of the three in earlier runs.
  ( cd "$dir" && exec sipp -sn uas -i 127.0.0.1 -p "$uas_port" -nostdin -buff_size 4194304 > uas.out 2>&1 ) &
  uas=$!
  mkdir -p "$dir/kam-run"
  cat > "$dir/kamailio.cfg" <<KAM
#!KAMAILIO
children=1
log_stderror=yes
debug=1
auto_aliases=no
listen=udp:127.0.0.1:$kam_port
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    \$du = "sip:127.0.0.1:$uas_port";
    forward();
}
KAM
  kamailio -DD -E -f "$dir/kamailio.cfg" -Y "$dir/kam-run" > "$dir/kamailio.log" 2>&1 &
  kam=$!
  trap 'kill $uas $kam $serve_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
  sleep 0.5
}
