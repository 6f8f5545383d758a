#!/usr/bin/env bash
# The flood bench: pod-to-pod TCP throughput across two weft nodes, clean
# and while hostile VXLAN floods node 2 at full speed (from member n1's
# address: truncated, wrong VNI, I flag clear, spoofed inner; from a
# non-member: well-formed VXLAN), in interleaved rounds, and while the same
# flood goes to a closed UDP port on node 2 (the cost of generating and
# receiving it at all on this 2-core machine, with weftd out of the path:
# the fair baseline for weftd's own cost). Prints a markdown
# table with medians and the ratio, and the drop counters; writes it to
# docs/results/flood.md.
#
#   netns-lab/flood.sh [--rounds N] [--seconds S]     (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=5
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export WEFT_LAB_PREFIX=wf WEFT_LAB_STATE=/run/weft-flood
L=netns-lab/lab.sh
cargo build --release --bins --example vxlan_flood -q
FLOOD=target/release/examples/vxlan_flood
cleanup() {
  kill "$(cat /run/weft-flood/iperf.pid 2>/dev/null)" 2>/dev/null || true
  ip netns del wf-rogue 2>/dev/null || true
  $L down >/dev/null 2>&1 || true
}
trap cleanup EXIT
$L down >/dev/null 2>&1 || true
$L up --nodes 2 --pods 1 >/dev/null
$L wait 60 >/dev/null
ip netns add wf-rogue
ip -n wf-rogue link add r0 type veth peer name rogue netns wf-ul
ip -n wf-ul link set rogue master br0 up
ip -n wf-rogue addr add 10.99.0.200/24 dev r0
ip -n wf-rogue link set r0 up
mapfile -t pods < <($L pods)
read -r p1 a1 _ <<< "${pods[0]}"
read -r p2 a2 _ <<< "${pods[1]}"
mac=$(target/release/weftctl --socket /run/weft-flood/admin-n1.sock --json fdb | python3 -c 'import json,sys; print([n["vtep_mac"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="n2"][0])')
ip netns exec "$p2" iperf3 -s -D -p 5401 --pidfile /run/weft-flood/iperf.pid >/dev/null
sleep 0.3
tput() { ip netns exec "$p1" iperf3 -c "$a2" -p 5401 -t "$secs" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'; }
flood_to() { # PORT: both flooders at node 2's PORT for secs+1 seconds
  $FLOOD wf-n1 10.99.0.1 "10.99.0.2:$1" "$((secs + 1))" "$a1" "$a2" "$mac" truncated,wrong-vni,i-flag-clear,spoofed-inner > /run/weft-flood/f1 &
  $FLOOD wf-rogue 10.99.0.200 "10.99.0.2:$1" "$((secs + 1))" "$a1" "$a2" "$mac" valid > /run/weft-flood/f2 &
}
clean=() flooded=() sent=() closed=()
for r in $(seq "$rounds"); do
  clean+=("$(tput)")
  flood_to 4790
  sleep 0.3
  closed+=("$(tput)")
  wait
  $FLOOD wf-n1 10.99.0.1 10.99.0.2:4789 "$((secs + 1))" "$a1" "$a2" "$mac" truncated,wrong-vni,i-flag-clear,spoofed-inner > /run/weft-flood/f1 &
  f1=$!
  $FLOOD wf-rogue 10.99.0.200 10.99.0.2:4789 "$((secs + 1))" "$a1" "$a2" "$mac" valid > /run/weft-flood/f2 &
  f2=$!
  sleep 0.3
  flooded+=("$(tput)")
  wait $f1 $f2
  sent+=("$(( $(cat /run/weft-flood/f1) + $(cat /run/weft-flood/f2) ))")
  echo "round $r: clean ${clean[-1]} Gbit/s, flood to a closed port ${closed[-1]}, flood to weftd ${flooded[-1]} Gbit/s (${sent[-1]} hostile datagrams sent)" >&2
done
drops=$(target/release/weftctl --socket /run/weft-flood/admin-n2.sock --json stats | python3 -c 'import json,sys; d=json.load(sys.stdin)["drops"]; print(", ".join("%s %d" % (k, v) for k, v in d.items() if v))')
alive=$(target/release/weftctl --socket /run/weft-flood/admin-n2.sock health)
python3 - "${clean[*]}" "${flooded[*]}" "${sent[*]}" "$drops" "$alive" "$secs" "${closed[*]}" <<'PY' | tee docs/results/flood.md
import statistics, subprocess, sys, datetime
clean = [float(x) for x in sys.argv[1].split()]
flood = [float(x) for x in sys.argv[2].split()]
sent = [int(x) for x in sys.argv[3].split()]
secs = int(sys.argv[6])
closed = [float(x) for x in sys.argv[7].split()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
mc, mf, mx = statistics.median(clean), statistics.median(flood), statistics.median(closed)
print("# Flood bench\n")
print(f"{datetime.date.today()}, commit {commit}, `netns-lab/flood.sh --rounds {len(clean)} --seconds {secs}` on the 2-core lab VM.\n")
print("| pod-to-pod TCP, 1 stream | Gbit/s: median (range) | vs clean | vs the same flood to a closed port |")
print("|---|---:|---:|---:|")
print(f"| clean | {mc:.2f} ({min(clean):.2f}-{max(clean):.2f}) | 1.00 | |")
print(f"| flood to a closed port on node 2 (weftd not involved) | {mx:.2f} ({min(closed):.2f}-{max(closed):.2f}) | {mx/mc:.2f} | 1.00 |")
print(f"| flood to weftd's VXLAN port | {mf:.2f} ({min(flood):.2f}-{max(flood):.2f}) | {mf/mc:.2f} | {mf/mx:.2f} |")
print(f"\nHostile datagrams per round (two flooder threads, one per source): median {statistics.median(sent) / (secs + 1):,.0f}/s.")
print(f"Node 2's drop counters after all rounds: {sys.argv[4]}. weftd afterwards: {sys.argv[5].strip()}.")
PY
