#!/usr/bin/env bash
# weft's lab: a cluster of nodes and pods in network namespaces on this
# machine. Nodes hang off an underlay bridge in its own namespace; pods are
# wired by weft's CNI plugin exactly as a runtime would; every node runs
# weftd with the other nodes as static peers.
#
#   netns-lab/lab.sh up [--nodes N] [--pods M] [--encap vxlan|ipip]
#   netns-lab/lab.sh pods              one line per pod: namespace, IP, node
#   netns-lab/lab.sh exec POD CMD...   run a command in a pod
#   netns-lab/lab.sh status            nodes, weftd processes, counters
#   netns-lab/lab.sh down              remove everything
#   netns-lab/lab.sh demo [--keep]     up, connectivity matrix, throughput, down
#   netns-lab/lab.sh bench [ARGS]      the data-plane benchmark (bench.sh)
#
# Names start with "wl-"; state lives in /run/weft-lab. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=/run/weft-lab
P=wl
# shellcheck source=netns-lab/common.sh
source netns-lab/common.sh

die() { echo "lab: $*" >&2; exit 1; }
need_root() {
  [[ $(id -u) -eq 0 ]] || die "run as root (it creates network namespaces)"
  ensure_commands ip:iproute2 ping:iputils-ping iperf3:iperf3 python3:python3 || die "tools missing"
}

build() {
  if [[ ! -x target/release/weftd || ! -x target/release/weft ]] || [[ -n $(find src encap fdb control Cargo.toml -newer target/release/weftd -print -quit 2>/dev/null) ]]; then
    echo "== building release binaries"
    cargo build --release --bins -q
  fi
}

down() {
  if [[ -d $STATE ]]; then
    for f in "$STATE"/*.pid; do [[ -e $f ]] && kill "$(cat "$f")" 2>/dev/null || true; done
  fi
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns del "$ns"; done
  rm -rf "$STATE"
}

up() {
  local nodes=3 pods=2 encap=vxlan
  while (($#)); do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      --pods) pods=$2; shift 2 ;;
      --encap) encap=$2; shift 2 ;;
      --attach|--family|--cross-subnet|--kernel-vxlan) die "$1 is not built yet" ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ $encap == vxlan || $encap == ipip ]] || die "--encap must be vxlan or ipip"
  ((nodes >= 1 && nodes <= 50 && pods >= 0 && pods <= 60)) || die "--nodes 1-50, --pods 0-60"
  [[ ! -d $STATE ]] || die "a lab is up already (netns-lab/lab.sh down)"
  need_root
  build
  mkdir -p "$STATE"
  echo "$nodes $pods $encap" > "$STATE/shape"
  trap 'echo "lab: setup failed, cleaning up" >&2; down' ERR
  ip netns add $P-ul
  ip -n $P-ul link add br0 type bridge
  ip -n $P-ul link set br0 up
  for k in $(seq "$nodes"); do
    ip netns add $P-n$k
    ip -n $P-n$k link set lo up
    ip -n $P-n$k link add ul0 type veth peer name n$k netns $P-ul
    ip -n $P-ul link set n$k master br0 up
    ip -n $P-n$k addr add 10.99.0.$k/24 dev ul0
    ip -n $P-n$k link set ul0 up
    # Real nodes have a default route; proxy ARP for 169.254.1.1 relies on it.
    ip -n $P-n$k route add default via 10.99.0.254
  done
  for k in $(seq "$nodes"); do
    {
      echo "node_name = \"n$k\""
      echo "[underlay]"; echo "address = \"10.99.0.$k\""
      echo "[overlay]"; echo "encap = \"$encap\""; echo "blocks = [\"10.244.$k.0/26\"]"
      echo "[dataplane]"; echo "stats_file = \"$STATE/stats-n$k.json\""
      for o in $(seq "$nodes"); do
        ((o == k)) && continue
        echo "[[peers]]"; echo "node = \"n$o\""; echo "underlay = \"10.99.0.$o\""; echo "blocks = [\"10.244.$o.0/26\"]"
      done
    } > "$STATE/n$k.toml"
    for j in $(seq "$pods"); do
      local pod=$P-n$k-p$j
      ip netns add "$pod"
      ip -n "$pod" link set lo up
      echo "{\"cniVersion\":\"1.1.0\",\"name\":\"weft\",\"type\":\"weft\",\"blocks\":[\"10.244.$k.0/26\"],\"stateDir\":\"$STATE/cni-n$k\"}" \
        | ip netns exec $P-n$k env CNI_COMMAND=ADD CNI_CONTAINERID="$pod" CNI_IFNAME=eth0 CNI_NETNS=/var/run/netns/"$pod" target/release/weft \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(r["msg"]) if "code" in r else print(r["ips"][0]["address"].split("/")[0])' \
        > "$STATE/$pod.ip"
    done
  done
  date +%s.%N > "$STATE/started"
  for k in $(seq "$nodes"); do
    ip netns exec $P-n$k target/release/weftd --config "$STATE/n$k.toml" run 2> "$STATE/weftd-n$k.log" &
    echo $! > "$STATE/weftd-n$k.pid"
  done
  for k in $(seq "$nodes"); do
    for _ in $(seq 200); do [[ -f $STATE/stats-n$k.json ]] && break; sleep 0.05; done
    [[ -f $STATE/stats-n$k.json ]] || { cat "$STATE/weftd-n$k.log" >&2; die "weftd on n$k did not start"; }
  done
  trap - ERR
  echo "== lab up: $nodes nodes x $pods pods, $encap"
}

pods() {
  [[ -d $STATE ]] || die "no lab is up"
  for f in "$STATE"/$P-n*-p*.ip; do
    local pod; pod=$(basename "$f" .ip)
    local node=${pod#$P-}; node=${node%%-p*}
    printf '%s %s %s\n' "$pod" "$(cat "$f")" "$node"
  done
}

status() {
  [[ -d $STATE ]] || { echo "no lab is up"; return 0; }
  read -r nodes npods encap < "$STATE/shape"
  echo "lab: $nodes nodes x $npods pods, $encap"
  for k in $(seq "$nodes"); do
    local pid; pid=$(cat "$STATE/weftd-n$k.pid")
    local alive=dead; kill -0 "$pid" 2>/dev/null && alive="running (pid $pid)"
    printf 'n%s  weftd %s  %s\n' "$k" "$alive" "$(cat "$STATE/stats-n$k.json" 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); d={k:v for k,v in s["drops"].items() if v}; print("tx", s["tx_packets"], "rx", s["rx_packets"], "drops", d or "none")' 2>/dev/null)"
  done
}

demo() {
  local keep=0
  [[ ${1:-} == --keep ]] && keep=1
  need_root
  ((keep)) || trap down EXIT
  trap 'exit 130' INT TERM
  local t0; t0=$(date +%s.%N)
  up --nodes 3 --pods 2
  mapfile -t lines < <(pods)
  echo "== pods"; printf '   %s\n' "${lines[@]}"
  # Peers are static until gossip exists: "convergence" is the time until the
  # first pod on node 1 hears back from the last pod on the last node.
  read -r p1 _ _ <<< "${lines[0]}"
  read -r _ alast _ <<< "${lines[-1]}"
  until ip netns exec "$p1" ping -c 1 -W 1 "$alast" >/dev/null 2>&1; do sleep 0.02; done
  python3 -c "print('== first reply across nodes %.2f s after weftd started (static peers)' % ($(date +%s.%N) - $(cat "$STATE/started")))"
  for l in "${lines[@]}"; do
    read -r ns _ _ <<< "$l"
    ip netns exec "$ns" iperf3 -s -D -p 5201 --pidfile "$STATE/iperf-$ns.pid" >/dev/null
  done
  echo "== connectivity matrix (ping, then a TCP exchange): every pod to every pod"
  local ok=0 bad=0 first_all=""
  for a in "${lines[@]}"; do
    read -r from _ fnode <<< "$a"
    local row=""
    for b in "${lines[@]}"; do
      read -r to addr tnode <<< "$b"
      [[ $from == "$to" ]] && { row+=" -"; continue; }
      if ip netns exec "$from" ping -c 1 -W 2 "$addr" >/dev/null && ip netns exec "$from" iperf3 -c "$addr" -n 64K >/dev/null 2>&1; then
        row+=" ok"; ok=$((ok + 1))
      else
        row+=" FAIL"; bad=$((bad + 1))
      fi
    done
    printf '   %-10s%s\n' "${from#$P-}" "$row"
  done
  echo "== $ok of $((ok + bad)) pod pairs reach each other"
  read -r p1 a1 _ <<< "${lines[0]}"
  read -r pn an _ <<< "${lines[-1]}"
  echo "== throughput ${p1#$P-} -> ${pn#$P-} (across nodes, 1 TCP stream, 3 s):"
  ip netns exec "$p1" iperf3 -c "$an" -t 3 -f g | awk '/receiver/{print "   " $7, $8}'
  python3 -c "print('== demo took %.1f s' % ($(date +%s.%N) - $t0))"
  ((bad == 0)) || die "$bad pod pairs could not reach each other"
  ((keep)) && echo "== the lab stays up (--keep): netns-lab/lab.sh down removes it"
  return 0
}

cmd=${1:-}
shift || true
case $cmd in
  up) need_root; up "$@" ;;
  down) need_root; down ;;
  status) status ;;
  pods) pods ;;
  exec) need_root; pod=$1; shift; ip netns exec "$pod" "$@" ;;
  demo) demo "$@" ;;
  bench) exec netns-lab/bench.sh "$@" ;;
  chaos) die "chaos is not built yet" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
