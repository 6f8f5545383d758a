#!/usr/bin/env bash
# weft's data-plane benchmark, in network namespaces on this machine.
#
# Builds six two-node clusters side by side (one pod per node, wired by
# weft's CNI plugin in every case) and measures them in interleaved rounds:
#   plain    routed, no encapsulation (the ceiling)
#   kvxlan   the kernel's VXLAN device, Flannel-style static entries
#   wvxlan   weftd, VXLAN (TUN attachment)
#   wvxbp0   the same with busy polling off (dataplane.busy_poll_us = 0)
#   wipip    weftd, IP-in-IP (raw sockets; no ipip module)
#   wveth    weftd, VXLAN, veth attachment without host paths (no TUN, no
#            routes, forwarding off)
# weft runs without its outgoing-NAT table (nat_outgoing = false), as the
# references run without one: a NAT table turns conntrack on for every
# packet the node forwards, a cost every CNI's masquerading pays alike
# (measured here: 64-byte packets 15 % slower with it).
# Metrics: TCP 1 stream, TCP 4 streams, UDP 64-byte packets/s, ping RTT,
# and CPU (cores busy during the 1-stream run). Medians, ranges, and ratios
# to kernel VXLAN go to a markdown table; a PNG chart is drawn with gnuplot.
#
#   netns-lab/bench.sh [--rounds N] [--seconds S] [--out DIR] [--variants "kvxlan wvxlan ..."]
#
# --variants measures a subset (kernel VXLAN is always included: ratios are
# to it), for quick A/B runs while working on the data path. With
# WEFTD_BASELINE=/path/to/weftd, variant "wbase" is weft VXLAN run by that
# binary (an older build), measured in the same interleaved rounds.
#
# Everything lives in namespaces named wb<pid>-*, removed on exit, failure
# or Ctrl-C. Traffic never leaves them.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
SECS=4
OUT=""
ONLY=""
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --variants) ONLY=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--out DIR] [--variants LIST]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-netns-lab/results/$(date +%Y-%m-%d)}
mkdir -p "$OUT"

[[ $(id -u) -eq 0 ]] || { echo "bench: run as root (it creates network namespaces)" >&2; exit 1; }
# shellcheck source=netns-lab/common.sh
source netns-lab/common.sh
ensure_commands ip:iproute2 ping:iputils-ping iperf3:iperf3 python3:python3 gnuplot:gnuplot-nox

echo "== building release binaries"
cargo build --release --bins -q
WEFT=$PWD/target/release/weft
WEFTD=$PWD/target/release/weftd

P=wb$$
TMP=$(mktemp -d /tmp/$P.XXXX)
PIDS=()
NSS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up; }

# cluster NAME [ATTACH]: nodes $NAME-n1/-n2 joined by a veth, pod
# namespaces $NAME-p1/-p2 (wired by pods_on). Veth attachment leaves
# forwarding off: weftd does not need it.
cluster() {
  local c=$1 attach=${2:-tun}
  ns $c-n1; ns $c-n2; ns $c-p1; ns $c-p2
  ip -n $c-n1 link add u1 type veth peer name u2 netns $c-n2
  for k in 1 2; do
    ip -n $c-n$k addr add 10.99.0.$k/24 dev u$k
    ip -n $c-n$k link set u$k up
    ip -n $c-n$k route add default via 10.99.0.254
    [[ $attach == veth ]] || ip netns exec $c-n$k sysctl -qw net.ipv4.ip_forward=1
  done
}

# pods_on NAME [ATTACH]: one pod per node, wired by weft's CNI plugin.
pods_on() {
  local c=$1 attach=${2:-tun}
  for k in 1 2; do
    echo "{\"cniVersion\":\"1.1.0\",\"name\":\"weft\",\"type\":\"weft\",\"attach\":\"$attach\",\"mtu\":1450,\"blocks\":[\"10.244.$k.0/26\"],\"stateDir\":\"$TMP/$c-cni$k\",\"weftdSocket\":\"$TMP/$c-cni$k.sock\"}" \
      | ip netns exec $c-n$k env CNI_COMMAND=ADD CNI_CONTAINERID=$c-pod$k CNI_IFNAME=eth0 CNI_NETNS=/var/run/netns/$c-p$k "$WEFT" >/dev/null
  done
}

weftd_on() { # cluster encap [attach] [busy_poll_us] [weftd binary]
  local c=$1 e=$2 attach=${3:-tun} busy=${4:-100} bin=${5:-$WEFTD}
  for k in 1 2; do
    local o=$((3 - k))
    cat > "$TMP/$c-n$k.toml" <<CONF
node_name = "n$k"
cni_socket = "$TMP/$c-cni$k.sock"
admin_socket = "$TMP/$c-admin$k.sock"
[underlay]
address = "10.99.0.$k"
[overlay]
encap = "$e"
blocks = ["10.244.$k.0/26"]
$([[ $bin == "$WEFTD" ]] && echo "nat_outgoing = false")
[dataplane]
stats_file = "$TMP/$c-stats$k.json"
attach = "$attach"
ports_file = "$TMP/$c-ports$k.json"
busy_poll_us = $busy
$([[ $attach == veth ]] && echo "veth_host_paths = false")
[[peers]]
node = "n$o"
underlay = "10.99.0.$o"
blocks = ["10.244.$o.0/26"]
CONF
    ip netns exec $c-n$k "$bin" --config "$TMP/$c-n$k.toml" run 2>"$TMP/$c-weftd$k.log" &
    PIDS+=($!)
  done
  for _ in $(seq 100); do
    [[ -f $TMP/$c-stats1.json && -f $TMP/$c-stats2.json ]] && return 0
    sleep 0.05
  done
  echo "bench: weftd did not start in $c:" >&2; cat "$TMP"/$c-weftd*.log >&2; exit 1
}

kernel_vxlan_on() {
  local c=$1
  for k in 1 2; do
    local o=$((3 - k))
    ip -n $c-n$k link add vx0 address 02:00:00:00:0b:0$k type vxlan id 1 dstport 4789 local 10.99.0.$k dev u$k nolearning
    ip -n $c-n$k link set vx0 mtu 1450 up
    bridge -n $c-n$k fdb append 02:00:00:00:0b:0$o dev vx0 dst 10.99.0.$o
    ip -n $c-n$k neigh add 10.244.$o.0 lladdr 02:00:00:00:0b:0$o dev vx0 nud permanent
    ip -n $c-n$k route add 10.244.$o.0/26 via 10.244.$o.0 dev vx0 onlink
  done
}

plain_on() {
  local c=$1
  ip -n $c-n1 route add 10.244.2.0/26 via 10.99.0.2
  ip -n $c-n2 route add 10.244.1.0/26 via 10.99.0.1
}

ALL=(plain kvxlan wvxlan wvxbp0 wipip wveth)
if [[ -n ${WEFTD_BASELINE:-} ]]; then
  [[ -x $WEFTD_BASELINE ]] || { echo "bench: WEFTD_BASELINE=$WEFTD_BASELINE is not an executable" >&2; exit 2; }
  ALL+=(wbase)
fi
VARIANTS=()
for v in "${ALL[@]}"; do
  if [[ -z $ONLY || $v == kvxlan || " $ONLY " == *" $v "* ]]; then VARIANTS+=("$v"); fi
done
for v in $ONLY; do
  [[ " ${ALL[*]} " == *" $v "* ]] || { echo "bench: unknown variant $v (one of: ${ALL[*]})" >&2; exit 2; }
done
echo "== building clusters: ${VARIANTS[*]}"
for v in "${VARIANTS[@]}"; do
  case $v in
    plain) cluster $P$v; pods_on $P$v; plain_on $P$v ;;
    kvxlan) cluster $P$v; pods_on $P$v; kernel_vxlan_on $P$v ;;
    wvxlan) cluster $P$v; pods_on $P$v; weftd_on $P$v vxlan ;;
    wvxbp0) cluster $P$v; pods_on $P$v; weftd_on $P$v vxlan tun 0 ;;
    wipip) cluster $P$v; pods_on $P$v; weftd_on $P$v ipip ;;
    wveth) cluster $P$v veth; weftd_on $P$v vxlan veth; pods_on $P$v veth ;;
    wbase) cluster $P$v; pods_on $P$v; weftd_on $P$v vxlan tun 100 "$WEFTD_BASELINE" ;;
  esac
done
for v in "${VARIANTS[@]}"; do
  ip netns exec $P$v-p2 iperf3 -s -D -p 5201 --pidfile "$TMP/$v-iperf.pid"
  ip netns exec $P$v-p1 ping -c 3 -i 0.2 -W 2 10.244.2.1 >/dev/null || { echo "bench: $v: no connectivity" >&2; exit 1; }
done
sleep 0.3
for v in "${VARIANTS[@]}"; do PIDS+=("$(cat "$TMP/$v-iperf.pid")"); done

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

RAW=$OUT/raw.csv
echo "round,variant,tcp1_gbps,tcp4_gbps,udp64_kpps,rtt_us,cpu_cores" > "$RAW"
NCPU=$(nproc)
for r in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    p1=$P$v-p1
    read -r b0 t0 < <(busy)
    t1=$(ip netns exec $p1 iperf3 -c 10.244.2.1 -t "$SECS" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
    read -r b1 tt1 < <(busy)
    cpu=$(python3 -c "print(round(($b1-$b0)/max(1,($tt1-$t0))*$NCPU,2))")
    t4=$(ip netns exec $p1 iperf3 -c 10.244.2.1 -t "$SECS" -P 4 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
    u=$(ip netns exec $p1 iperf3 -c 10.244.2.1 -t "$SECS" -u -b 0 -l 64 -J | python3 -c '
import json,sys
e=json.load(sys.stdin)["end"]["sum"]
print((e["packets"]-e["lost_packets"])/e["seconds"]/1e3)')
    rtt=$(ip netns exec $p1 ping -q -c 50 -i 0.02 10.244.2.1 | awk -F'/' '/^rtt/{print $5*1000}')
    echo "$r,$v,$t1,$t4,$u,$rtt,$cpu" >> "$RAW"
    printf '   round %s %-7s tcp1 %6.2f Gbit/s  tcp4 %6.2f Gbit/s  udp64 %7.1f kpps  rtt %6.0f us  cpu %s\n' "$r" "$v" "$t1" "$t4" "$u" "$rtt" "$cpu"
  done
done

python3 - "$RAW" "$OUT" "$ROUNDS" "$SECS" "${VARIANTS[*]}" <<'PY'
import csv, statistics, subprocess, sys, datetime
raw, out, rounds, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = list(csv.DictReader(open(raw)))
variants = sys.argv[5].split()
names = {"plain": "plain routing", "kvxlan": "kernel VXLAN", "wvxlan": "weft VXLAN", "wvxbp0": "weft VXLAN, no busy poll", "wipip": "weft IP-in-IP",
         "wveth": "weft VXLAN, veth attach", "wbase": "weft VXLAN, baseline build"}
metrics = [("tcp1_gbps", "TCP 1 stream (Gbit/s)", True), ("tcp4_gbps", "TCP 4 streams (Gbit/s)", True),
           ("udp64_kpps", "UDP 64 B (kpps)", True), ("rtt_us", "ping RTT (µs)", False), ("cpu_cores", "CPU, 1 stream (cores)", False)]
med = {}
lines = []
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines.append(f"Measured {datetime.date.today()} on commit {commit}: {rounds} interleaved rounds of {secs} s per test; median (min–max), ratio to kernel VXLAN.\n")
lines.append("| variant | " + " | ".join(m[1] for m in metrics) + " |")
lines.append("|---|" + "---:|" * len(metrics))
for v in variants:
    for key, _, _ in metrics:
        med[(v, key)] = statistics.median(float(r[key]) for r in rows if r["variant"] == v)
for v in variants:
    cells = []
    for key, _, higher in metrics:
        vals = [float(r[key]) for r in rows if r["variant"] == v]
        m, ref = med[(v, key)], med[("kvxlan", key)]
        ratio = f" ×{m/ref:.2f}" if ref else ""
        cells.append(f"{m:.2f} ({min(vals):.2f}–{max(vals):.2f}){ratio}")
    lines.append(f"| {names[v]} | " + " | ".join(cells) + " |")
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
# Chart data: one block per metric (throughputs), with min/max for error bars.
with open(f"{out}/chart.dat", "w") as f:
    for i, v in enumerate(variants):
        for key in ("tcp1_gbps", "tcp4_gbps"):
            vals = [float(r[key]) for r in rows if r["variant"] == v]
            f.write(f"{i} \"{names[v]}\" {key} {statistics.median(vals)} {min(vals)} {max(vals)}\n")
PY

gnuplot <<GP
set terminal pngcairo size 1300,500 font ",11"
set output "$OUT/chart.png"
set title "Pod-to-pod TCP throughput, two nodes in namespaces (median, min–max)"
set ylabel "Gbit/s"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set yrange [0:*]
set key top right
set grid ytics
plot "< grep tcp1_gbps $OUT/chart.dat" using 4:5:6:xtic(2) title "1 stream", \
     "< grep tcp4_gbps $OUT/chart.dat" using 4:5:6 title "4 streams"
GP
echo "== results in $OUT (results.md, raw.csv, chart.png)"
