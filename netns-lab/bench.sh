#!/usr/bin/env bash
# weft's data-plane benchmark, in network namespaces on this machine.
#
# Builds eight two-node clusters side by side with netns-lab/lab.sh (one pod
# per node, wired by weft's CNI plugin in every case, nodes on an underlay
# bridge) and measures them in interleaved rounds:
#   plain    routed, no encapsulation (the ceiling)
#   kvxlan   the kernel's VXLAN device, Flannel-style static entries
#   whybrid  weftd on its kernel path: the kernel's vxlan device, every
#            entry programmed by weftd from its control plane, with its
#            receive checks (nftables)
#   whybnc   the same trusting the underlay as Flannel does: no receive
#            checks, pods reach nodes straight over the underlay (no
#            policy rule): dataplane.kernel_checks = false,
#            overlay.pod_to_node_via_overlay = false
#   wvxlan   weftd, VXLAN, userspace path (TUN attachment)
#   wvxbp0   the same with busy polling off (dataplane.busy_poll_us = 0)
#   wipip    weftd, IP-in-IP (raw sockets; no ipip module)
#   wveth    weftd, VXLAN, veth attachment without host paths (no TUN, no
#            routes, forwarding off)
# weft runs without its outgoing-NAT table (nat_outgoing = false), as the
# references run without one: a NAT table turns conntrack on for every
# packet the node forwards, a cost every CNI's masquerading pays alike
# (measured here: 64-byte packets 15 % slower with it).
# Metrics: TCP 1 stream, TCP 4 streams, UDP 64-byte packets/s, ping RTT,
# CPU (whole-machine cores busy during the 1-stream run, and that per
# Gbit/s carried), and CPU at a fixed rate (one TCP stream paced at --rate
# Gbit/s: what the data path costs a node at a moderate load). Medians,
# ranges, and ratios to kernel VXLAN go to a markdown table; a PNG chart is
# drawn with gnuplot.
#
#   netns-lab/bench.sh [--rounds N] [--seconds S] [--rate GBITS] [--out DIR] [--variants "kvxlan wvxlan ..."]
#
# --variants measures a subset (kernel VXLAN is always included: ratios are
# to it), for quick A/B runs while working on the data path. With
# WEFTD_BASELINE=/path/to/weftd, variant "wbase" is weft VXLAN run by that
# binary (an older build), measured in the same interleaved rounds;
# WEFTD_BASELINE_AS=VARIANT gives it another weft variant's shape instead
# (e.g. wveth, to measure a veth attachment change).
#
# Everything lives in namespaces named wb<pid><variant>-*, removed on exit,
# failure or Ctrl-C. Traffic never leaves them. WEFTD_BASELINE must know
# the configuration lab.sh writes (overlay.nat_outgoing, busy_poll_us).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
SECS=4
RATE=3
OUT=""
ONLY=""
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --variants) ONLY=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--rate GBITS] [--out DIR] [--variants LIST]" >&2; exit 2 ;;
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
BIN=$PWD/target/release

P=wb$$
TMP=$(mktemp -d /tmp/$P.XXXX)
PIDS=()
LABS=()
# lab VARIANT ARGS...: netns-lab/lab.sh for the variant's own cluster (its
# own name prefix and state directory; wbase runs the baseline weftd).
lab() {
  local v=$1 bin=$BIN
  shift
  [[ $v == wbase ]] && bin=$TMP/basebin
  WEFT_LAB_PREFIX=$P$v WEFT_LAB_STATE=$TMP/lab-$v WEFT_LAB_BIN=$bin netns-lab/lab.sh "$@"
}
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for v in "${LABS[@]}"; do lab "$v" down >/dev/null 2>&1 || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ALL=(plain kvxlan whybrid whybnc wvxlan wvxbp0 wipip wveth)
if [[ -n ${WEFTD_BASELINE:-} ]]; then
  [[ -x $WEFTD_BASELINE ]] || { echo "bench: WEFTD_BASELINE=$WEFTD_BASELINE is not an executable" >&2; exit 2; }
  mkdir "$TMP/basebin"
  ln -s "$WEFTD_BASELINE" "$TMP/basebin/weftd"
  ln -s "$BIN/weft" "$TMP/basebin/weft"
  ALL+=(wbase)
fi
VARIANTS=()
for v in "${ALL[@]}"; do
  if [[ -z $ONLY || $v == kvxlan || " $ONLY " == *" $v "* ]]; then VARIANTS+=("$v"); fi
done
for v in $ONLY; do
  [[ " ${ALL[*]} " == *" $v "* ]] || { echo "bench: unknown variant $v (one of: ${ALL[*]})" >&2; exit 2; }
done
# Every variant is a two-node lab (netns-lab/lab.sh: an underlay bridge,
# one pod per node wired by weft's CNI plugin, static peers, no outgoing
# NAT); the variants differ only in the shape lab.sh is asked for.
echo "== building clusters: ${VARIANTS[*]}"
for v in "${VARIANTS[@]}"; do
  shape=(--nodes 2 --pods 1 --static --no-nat)
  as=$v
  [[ $v == wbase ]] && as=${WEFTD_BASELINE_AS:-wvxlan}
  case $as in
    plain) shape+=(--encap none) ;;
    kvxlan) shape=(--nodes 2 --pods 1 --kernel-vxlan) ;;
    whybrid) shape+=(--mode kernel) ;;
    whybnc) shape+=(--mode kernel --no-kernel-checks --pods-to-nodes-direct) ;;
    wvxlan) shape+=(--busy-poll 100) ;;
    wvxbp0) shape+=(--busy-poll 0) ;;
    wipip) shape+=(--encap ipip --busy-poll 100) ;;
    wveth) shape+=(--attach veth --no-host-paths --busy-poll 100) ;;
    *) echo "bench: WEFTD_BASELINE_AS must name a weft variant (got $as)" >&2; exit 2 ;;
  esac
  LABS+=("$v")
  lab "$v" up "${shape[@]}" >/dev/null
done
# The pods: client on node 1, server on node 2.
declare -A CLIENT SERVER
for v in "${VARIANTS[@]}"; do
  CLIENT[$v]=$P$v-n1-p1
  SERVER[$v]=$(cut -d, -f1 "$TMP/lab-$v/$P$v-n2-p1.ip")
  ip netns exec $P$v-n2-p1 iperf3 -s -D -p 5201 --pidfile "$TMP/$v-iperf.pid"
  ip netns exec "${CLIENT[$v]}" ping -c 3 -i 0.2 -W 2 "${SERVER[$v]}" >/dev/null || { echo "bench: $v: no connectivity" >&2; exit 1; }
done
sleep 0.3
for v in "${VARIANTS[@]}"; do PIDS+=("$(cat "$TMP/$v-iperf.pid")"); done

# busy: "BUSY TOTAL", CPU time in use and in all since some instant, summed
# over the CPUs (only differences mean anything), as wall-clock time minus
# idle time. Idle from the cpuidle driver's residency (microseconds, exact)
# where there is one, else /proc/stat's idle and iowait (tickless idle
# accounting: measured from idle entry and exit, not sampled). Never from
# /proc/stat's busy states: those are sampled at the timer tick, and a
# paced load that runs in step with the tick shows there as almost idle
# (measured: 0.04 cores, and 0.75 or 1.70 cores in two runs of the same
# 3 Gbit/s stream that the idle time put at 0.90 and 0.85). Idle time a
# hypervisor stole counts as busy.
NCPU=$(nproc)
if compgen -G "/sys/devices/system/cpu/cpu0/cpuidle/state*/time" >/dev/null; then
  idle_us() { cat /sys/devices/system/cpu/cpu*/cpuidle/state*/time | awk '{s+=$1} END {printf "%.0f", s}'; }
else
  TICK_US=$((1000000 / $(getconf CLK_TCK)))
  idle_us() { awk -v t="$TICK_US" '/^cpu /{printf "%.0f", ($5 + $6) * t}' /proc/stat; }
fi
busy() {
  local idle now
  idle=$(idle_us)
  now=$(date +%s%6N)
  echo "$((now * NCPU - idle)) $((now * NCPU))"
}

RAW=$OUT/raw.csv
echo "round,variant,tcp1_gbps,tcp4_gbps,udp64_kpps,rtt_us,cpu_cores,cpu_per_gbps,fixed_gbps,fixed_cpu_cores" > "$RAW"
for r in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    p1=${CLIENT[$v]} to=${SERVER[$v]}
    read -r b0 t0 < <(busy)
    t1=$(ip netns exec $p1 iperf3 -c "$to" -t "$SECS" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
    read -r b1 tt1 < <(busy)
    cpu=$(python3 -c "print(round(($b1-$b0)/max(1,($tt1-$t0))*$NCPU,2))")
    per=$(python3 -c "print(round($cpu/max(0.001,$t1),3))")
    read -r b0 t0 < <(busy)
    tf=$(ip netns exec $p1 iperf3 -c "$to" -t "$SECS" -b "${RATE}G" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
    read -r b1 tt1 < <(busy)
    fcpu=$(python3 -c "print(round(($b1-$b0)/max(1,($tt1-$t0))*$NCPU,2))")
    t4=$(ip netns exec $p1 iperf3 -c "$to" -t "$SECS" -P 4 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
    u=$(ip netns exec $p1 iperf3 -c "$to" -t "$SECS" -u -b 0 -l 64 -J | python3 -c '
import json,sys
e=json.load(sys.stdin)["end"]["sum"]
print((e["packets"]-e["lost_packets"])/e["seconds"]/1e3)')
    rtt=$(ip netns exec $p1 ping -q -c 50 -i 0.02 "$to" | awk -F'/' '/^rtt/{print $5*1000}')
    echo "$r,$v,$t1,$t4,$u,$rtt,$cpu,$per,$tf,$fcpu" >> "$RAW"
    printf '   round %s %-7s tcp1 %6.2f Gbit/s  tcp4 %6.2f Gbit/s  udp64 %7.1f kpps  rtt %6.0f us  cpu %s (%s per Gbit/s)  at %sG: %.2f Gbit/s, cpu %s\n' "$r" "$v" "$t1" "$t4" "$u" "$rtt" "$cpu" "$per" "$RATE" "$tf" "$fcpu"
  done
done

python3 - "$RAW" "$OUT" "$ROUNDS" "$SECS" "${VARIANTS[*]}" "$RATE" "${WEFTD_BASELINE_AS:-wvxlan}" <<'PY'
import csv, statistics, subprocess, sys, datetime
raw, out, rounds, secs, rate, base_as = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[6], sys.argv[7]
rows = list(csv.DictReader(open(raw)))
variants = sys.argv[5].split()
names = {"plain": "plain routing", "kvxlan": "kernel VXLAN", "whybrid": "weft hybrid (kernel path)", "whybnc": "weft hybrid, Flannel-like (no checks, no rule)", "wvxlan": "weft VXLAN", "wvxbp0": "weft VXLAN, no busy poll", "wipip": "weft IP-in-IP",
         "wveth": "weft VXLAN, veth attach"}
names["wbase"] = names.get(base_as, base_as) + ", baseline build"
metrics = [("tcp1_gbps", "TCP 1 stream (Gbit/s)", True), ("tcp4_gbps", "TCP 4 streams (Gbit/s)", True),
           ("udp64_kpps", "UDP 64 B (kpps)", True), ("rtt_us", "ping RTT (µs)", False), ("cpu_cores", "CPU, 1 stream (cores)", False),
           ("cpu_per_gbps", "CPU per Gbit/s, 1 stream (cores)", False), ("fixed_cpu_cores", f"CPU at {rate} Gbit/s (cores)", False)]
med = {}
lines = []
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines.append(f"Measured {datetime.date.today()} on commit {commit}: {rounds} interleaved rounds of {secs} s per test; median (min–max), ratio to kernel VXLAN.\n")
# What each variant costs beyond the kernel at the fixed rate, and whether
# it carried that rate.
extra = []
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
lines.append("")
ref = statistics.median(float(r["fixed_cpu_cores"]) for r in rows if r["variant"] == "kvxlan")
for v in variants:
    if v == "kvxlan":
        continue
    c = statistics.median(float(r["fixed_cpu_cores"]) for r in rows if r["variant"] == v)
    g = statistics.median(float(r["fixed_gbps"]) for r in rows if r["variant"] == v)
    extra.append(f"{names[v]} {c - ref:+.2f} cores at {g:.2f} Gbit/s")
lines.append(f"At {rate} Gbit/s (one stream, paced), CPU beyond kernel VXLAN's ({ref:.2f} cores): " + "; ".join(extra) + ".")
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
