#!/usr/bin/env bash
# Runs the control-plane simulator table of the README (N = 10, 100, 1000;
# 0 % and 10 % loss) and writes docs/results/gossip-sim.md.
# Usage: control/run-sim.sh [NODES...]   (default: 10 100 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p weft-control --release --example gossip_sim
sim=target/release/examples/gossip_sim
out=docs/results/gossip-sim.md
sizes=("${@:-10 100 1000}")
{
  echo "# Control-plane simulator"
  echo
  echo "$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), \`control/run-sim.sh ${sizes[*]}\`;"
  echo "virtual time, 1-5 ms one-way latency, nodes started $((2000))/N ms apart through one seed,"
  echo "probe period 1 s, anti-entropy every 2 s; 5 endpoints published from different nodes."
  echo
  $sim --header
  for n in ${sizes[*]}; do
    for loss in 0 0.1; do
      $sim --nodes "$n" --loss "$loss"
    done
  done
} | tee "$out.tmp"
mv "$out.tmp" "$out"
