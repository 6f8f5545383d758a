#!/usr/bin/env bash
# The soak: a cluster run for a long time under pod churn, checked traffic
# and faults, sampled for growth that does not level off (not in CI; the
# chaos tests in ./test.sh are its short forms).
#
#   netns-lab/soak.sh DURATION [--nodes N] [--out DIR]
#
# DURATION is seconds, or minutes/hours with an m/h suffix (at least 3m:
# the growth check compares quarters of the run). A lab of N nodes (default
# 5) with two anchor pods each comes up under its own names (prefix "ws",
# state /run/weft-soak); netns-lab/soak.py then drives traffic, churn and
# faults and samples every node (its header says what exactly). Results go
# to DIR (default netns-lab/results/soak-DATE): summary.md, samples.csv,
# events.log, one .dat per node and soak.png, the plot. The lab is removed
# at the end, on failure and on Ctrl-C. Exit status 0 only if every check held.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=netns-lab/common.sh
source netns-lab/common.sh

die() { echo "soak: $*" >&2; exit 1; }
duration=${1:-}
shift || true
nodes=5
out=netns-lab/results/soak-$(date -u +%Y-%m-%d)
while (($#)); do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
case $duration in
  *h) seconds=$((${duration%h} * 3600)) ;;
  *m) seconds=$((${duration%m} * 60)) ;;
  *[0-9]) seconds=$duration ;;
  *) die "usage: soak.sh DURATION [--nodes N] [--out DIR] (DURATION like 3600, 90m or 1h)" ;;
esac
((seconds >= 180)) || die "DURATION must be at least 3 minutes"
((nodes >= 3 && nodes <= 10)) || die "--nodes 3-10"
[[ $(id -u) -eq 0 ]] || die "run as root (it creates network namespaces)"
ensure_commands gnuplot:gnuplot-nox python3:python3 nft:nftables || die "tools missing"

export WEFT_LAB_PREFIX=${WEFT_LAB_PREFIX:-ws} WEFT_LAB_STATE=${WEFT_LAB_STATE:-/run/weft-soak}
[[ ! -d $WEFT_LAB_STATE ]] || die "$WEFT_LAB_STATE exists: a soak is running, or a crashed one left it (WEFT_LAB_STATE=$WEFT_LAB_STATE netns-lab/lab.sh down)"
cleanup() {
  pkill -f "netns-lab/soak_traffic.py" 2>/dev/null || true
  netns-lab/lab.sh down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$out"
netns-lab/lab.sh up --nodes "$nodes" --pods 2 --family dual
netns-lab/lab.sh wait 60 >/dev/null || die "the lab did not converge"
status=0
python3 netns-lab/soak.py "$seconds" "$out" || status=$?

plot() {
  local k lines=()
  for k in $(seq "$nodes"); do lines+=("\"$out/n$k.dat\" using (\$1/60):COL with lines lw 1.5 title \"n$k\""); done
  series() { # COLUMN-EXPRESSION: one plot command over every node's file
    local IFS=,
    echo "plot ${lines[*]//COL/$1}"
  }
  gnuplot <<GP
set terminal pngcairo size 1400,1050 font ",10"
set output "$out/soak.png"
set multiplot layout 3,2 title "weft soak: $nodes nodes, $((seconds / 60)) min, $(git rev-parse --short HEAD 2>/dev/null || echo '?') — pod churn, checked TCP/UDP, weftd kills (n3..n$nodes), partitions"
set xlabel "minutes"
set key outside right
set grid
set title "weftd resident memory (MiB); n1, n2 never restarted"
$(series '($4/1024)')
set title "weftd open file descriptors"
$(series '5')
set title "gossip records held"
$(series '6')
set title "pod endpoints known to gossip (all nodes' pods)"
$(series '7')
set title "pods on the node (lines) and IPAM allocations (points)"
plot $(for k in $(seq "$nodes"); do printf '"%s/n%s.dat" using ($1/60):12 with lines lw 1.5 title "n%s pods", "%s/n%s.dat" using ($1/60):11 with points pt 7 ps 0.3 notitle, ' "$out" "$k" "$k" "$out" "$k"; done | sed 's/, $//')
set title "kernel routes (proto 87) and nftables rules"
plot $(for k in $(seq "$nodes"); do printf '"%s/n%s.dat" using ($1/60):8 with lines lw 1.5 title "n%s routes", "%s/n%s.dat" using ($1/60):9 with lines dt 2 title "n%s nft rules", ' "$out" "$k" "$k" "$out" "$k" "$k"; done | sed 's/, $//')
unset multiplot
GP
}
if [[ -f $out/n1.dat ]]; then plot || echo "soak: the plot failed" >&2; fi
echo "== soak results in $out (summary.md, samples.csv, events.log, soak.png)"
cat "$out/summary.md" 2>/dev/null || true
exit "$status"
