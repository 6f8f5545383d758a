#!/usr/bin/env bash
# The multicast fan-out bench: one pod on node 1 sends 64-byte datagrams as
# fast as one core allows, to a group with member pods on 1, 2 and 4 other
# nodes, and (the reference) unicast to one pod on node 2; interleaved
# rounds. Reports per case the sender's rate, what each member received,
# the packets node 1's weftd sent to other nodes (copies, for a group),
# and node 1's weftd CPU (cores) and CPU per million of those packets:
# what head-end replication costs
# the sender's node, per packet it sends out. Writes a markdown table to
# netns-lab/results/fanout.md (and prints it).
#
#   netns-lab/fanout.sh [--rounds N] [--seconds S] [--size BYTES]  (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=4 size=64
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export WEFT_LAB_PREFIX=wo WEFT_LAB_STATE=/run/weft-fanout
# Multicast on (it is off by default), no rate limit in the way.
export WEFT_LAB_CONFIG_EXTRA=$'[multicast]\nenabled = true\npod_rate_pps = 100000000\nnode_rate_pps = 100000000'
L=netns-lab/lab.sh
LOAD=netns-lab/mcast_load.py
G=239.9.9.9 PORT=5009
cleanup() {
  pkill -f "mcast_load.py" 2>/dev/null || true
  $L down >/dev/null 2>&1 || true
}
trap cleanup EXIT
$L down >/dev/null 2>&1 || true
cargo build --release --bins -q
$L up --nodes 5 --pods 1 --mode userspace >/dev/null
$L wait 60 >/dev/null
pod() { echo "wo-n$1-p1"; }
pod_ip() { $L pods | awk -v p="$(pod "$1")" '$1 == p { split($2, a, ","); print a[1] }'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$(cat "$WEFT_LAB_STATE/weftd-n1.pid")/stat"; }
hz=$(getconf CLK_TCK)
weftctl() { ip netns exec wo-n1 target/release/weftctl --socket "$WEFT_LAB_STATE/admin-n1.sock" --json "$@"; }
# Packets node 1's weftd sent to other nodes: unicast and multicast copies.
out_packets() { weftctl stats | python3 -c 'import json,sys; d = json.load(sys.stdin); print(d["tx_packets"] + d["multicast_copies"])'; }
members() {
  weftctl groups | python3 -c "import json,sys; print(sum(len(g['nodes']) for g in json.load(sys.stdin)['groups'] if g['group'] == '$G'))"
}
out=$(mktemp -d)
# One case: "unicast" or the number of nodes with members.
run_case() {
  local case=$1 r=$2 dst pids=() k
  if [[ $case == unicast ]]; then
    dst=$(pod_ip 2)
    ip netns exec "$(pod 2)" python3 $LOAD recv "$dst" $PORT $((secs + 3)) > "$out/$case.$r.n2" & pids+=($!)
  else
    dst=$G
    for k in $(seq 2 $((case + 1))); do
      ip netns exec "$(pod "$k")" python3 $LOAD recv $G $PORT $((secs + 3)) > "$out/$case.$r.n$k" & pids+=($!)
    done
    for _ in $(seq 100); do [[ $(members) == "$case" ]] && break; sleep 0.1; done
    [[ $(members) == "$case" ]] || { echo "node 1 never saw $case member nodes" >&2; exit 1; }
  fi
  sleep 0.5
  local t0 c0 sent t1 c1
  t0=$(ticks); c0=$(out_packets)
  sent=$(ip netns exec "$(pod 1)" python3 $LOAD send "$dst" $PORT "$secs" "$size")
  t1=$(ticks); c1=$(out_packets)
  wait "${pids[@]}"
  local got min=""
  for f in "$out/$case.$r".n*; do
    got=$(cat "$f"); [[ -z $min || $got -lt $min ]] && min=$got
  done
  # case round sent/s min-received/s copies/s weftd-cores
  echo "$case $r $((sent / secs)) $((min / secs)) $(((c1 - c0) / secs)) $(python3 -c "print(round(($t1 - $t0) / $hz / $secs, 3))")" >> "$out/rows"
  # Let memberships lapse between cases (the receivers are gone).
  for _ in $(seq 100); do [[ $(members) == 0 ]] && break; sleep 0.1; done
}
for r in $(seq "$rounds"); do
  for c in unicast 1 2 4; do run_case "$c" "$r"; done
done
python3 - "$out/rows" "$rounds" "$secs" "$size" <<'PY' | tee netns-lab/results/fanout.md
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rounds, secs, size = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"Multicast fan-out from one pod on node 1, {size}-byte datagrams, "
      f"medians of {rounds} interleaved rounds of {secs} s (netns-lab/fanout.sh):\n")
print("| case | pod sent (datagrams/s) | received per member (min, /s) | node 1 weftd sent to nodes (packets/s) | node 1 weftd CPU (cores) | µs of weftd CPU per packet sent |")
print("|---|---:|---:|---:|---:|---:|")
for case in ["unicast", "1", "2", "4"]:
    rs = [r for r in rows if r[0] == case]
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    sent, got, copies, cpu = med(2), med(3), med(4), med(5)
    name = "unicast to 1 pod" if case == "unicast" else f"group, members on {case} node{'s' if case != '1' else ''}"
    per = cpu / copies * 1e6 if copies else float("nan")
    print(f"| {name} | {sent:,.0f} | {got:,.0f} | {copies:,.0f} | {cpu:.2f} | {per:.1f} |")
PY
rm -rf "$out"
