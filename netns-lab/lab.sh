#!/usr/bin/env bash
# weft's lab: a cluster of nodes and pods in network namespaces on this
# machine. Nodes hang off an underlay bridge in its own namespace; every
# node runs weftd, which joins the others by gossip through node 1 and
# claims its pod block; pods are then wired by weft's CNI plugin exactly as
# a runtime would.
#
#   netns-lab/lab.sh up [--nodes N] [--pods M] [--encap vxlan|ipip|none]
#                       [--family 4|6|dual] [--cross-subnet] [--static | --kernel-vxlan]
#                       [--attach tun|veth [--no-host-paths]] [--underlay-mtu BYTES]
#                       [--block-release SECONDS] [--busy-poll MICROSECONDS] [--no-nat]
#                       [--mode userspace|kernel|auto[,MODE...]] [--no-kernel-checks]
#                       [--pods-to-nodes-direct] [--underlay 4|6|dual|LIST]
#   netns-lab/lab.sh pods              one line per pod: namespace, IP[,IP], node
#   netns-lab/lab.sh add-pod NODE      wire one more pod on node NODE (a number)
#   netns-lab/lab.sh add-pods NODE N   wire N more pods on node NODE, 4 at a time
#   netns-lab/lab.sh del-pods NODE N   remove node NODE's N highest-numbered pods (CNI DEL)
#   netns-lab/lab.sh exec POD CMD...   run a command in a pod
#   netns-lab/lab.sh status            nodes, weftd processes, members, counters
#   netns-lab/lab.sh wait [SECONDS]    until every node routes to every block
#   netns-lab/lab.sh kill NODE         kill -9 weftd on node NODE (a number)
#   netns-lab/lab.sh start NODE        start weftd on node NODE again
#   netns-lab/lab.sh partition A.. -- B..  drop underlay traffic between groups
#   netns-lab/lab.sh heal              remove every partition
#   netns-lab/lab.sh down              remove everything
#   netns-lab/lab.sh demo [--keep] [--mode M]  up, connectivity matrix, throughput, down
#   netns-lab/lab.sh bench [ARGS]      the data-plane benchmark (bench.sh)
#   netns-lab/lab.sh chaos             fault scenarios, one PASS/FAIL line each
#
# --static gives every node the others as static peers and no gossip;
# --kernel-vxlan builds the same shape on the kernel's VXLAN device with
# Flannel-style static entries (no weftd: the reference); --cross-subnet
# puts the second half of the nodes on 10.99.1.0/24 behind a router and
# turns CrossSubnet on; --family 6|dual gives pods IPv6 or both; --attach
# veth has weftd own the pods' veths (its TUN is then only the host port;
# --no-host-paths: no TUN, no routes, pods reach only pods);
# --underlay-mtu sets the underlay links' MTU (default 1500; weftd reads it,
# nothing else is told); --block-release sets gossip.block_release_after_s
# (default 300: how long an emptied on-demand block stays with its node);
# --busy-poll sets dataplane.busy_poll_us; --no-nat turns weftd's outgoing
# NAT off (overlay.nat_outgoing = false; the benchmark's references have
# none); --mode sets dataplane.mode, for every node or per node as a comma
# list (node 1 first: "kernel,userspace,userspace" is a mixed cluster). The
# default is userspace: the lab exists to exercise weftd's own data path,
# and "auto" would pick the kernel's on this machine; --no-kernel-checks
# sets dataplane.kernel_checks = false (the kernel path without its
# nftables receive checks); --pods-to-nodes-direct sets
# overlay.pod_to_node_via_overlay = false (no policy rule); --underlay 6
# has the nodes speak to each other over IPv6 (fd00:99:S::K: weftd's
# underlay address, the gossip seed, static peers) — every node's underlay
# link has both families either way, as does the router. --underlay dual
# sets underlay.dual_stack on every node (tunnels and gossip over both
# families), odd nodes preferring IPv4 and even ones IPv6; a comma list
# gives each node its own: 4, 6 (one family), dual4, dual6 (both,
# preferring that one), e.g. --underlay 4,dual6,dual4.
# A router namespace ($P-rt) is every node's default gateway and plays "the
# internet" at 203.0.113.1 and 2001:db8::1.
# Names start with "wl-" and state lives in /run/weft-lab, unless
# WEFT_LAB_PREFIX and WEFT_LAB_STATE say otherwise (tests run their own
# labs side by side); WEFT_LAB_BIN names a directory of prebuilt binaries
# (default: target/release, built if stale); WEFT_LAB_CONFIG_EXTRA is TOML
# appended to every weftd's configuration (new tables only). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${WEFT_LAB_STATE:-/run/weft-lab}
P=${WEFT_LAB_PREFIX:-wl}
BIN=${WEFT_LAB_BIN:-target/release}
# shellcheck source=netns-lab/common.sh
source netns-lab/common.sh
# shellcheck source=netns-lab/chaos.sh
source netns-lab/chaos.sh

die() { echo "lab: $*" >&2; exit 1; }
need_root() {
  [[ $(id -u) -eq 0 ]] || die "run as root (it creates network namespaces)"
  ensure_commands ip:iproute2 ping:iputils-ping iperf3:iperf3 python3:python3 nft:nftables || die "tools missing"
}

build() {
  [[ -z ${WEFT_LAB_BIN:-} ]] || return 0
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

# underlay_words SPEC: how the lab's summary names --underlay SPEC.
underlay_words() {
  case $1 in
    4 | 6) echo "IPv$1" ;;
    dual) echo "dual-stack" ;;
    dual4 | dual6) echo "dual-stack (IPv${1: -1} preferred)" ;;
    *) echo "per-node ($1)" ;;
  esac
}

up() {
  local nodes=3 pods=2 encap=vxlan mode=gossip family=4 cross=0 attach=tun ulmtu=1500 hostpaths=true release=300 busy="" nat=true dpmodes=userspace kchecks=true p2n=true underlay=4
  while (($#)); do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      --pods) pods=$2; shift 2 ;;
      --encap) encap=$2; shift 2 ;;
      --static) mode=static; shift ;;
      --kernel-vxlan) mode=kernel-vxlan; shift ;;
      --family) family=$2; shift 2 ;;
      --cross-subnet) cross=1; shift ;;
      --attach) attach=${2:-}; shift 2 ;;
      --underlay-mtu) ulmtu=$2; shift 2 ;;
      --no-host-paths) hostpaths=false; shift ;;
      --block-release) release=$2; shift 2 ;;
      --busy-poll) busy=$2; shift 2 ;;
      --no-nat) nat=false; shift ;;
      --mode) dpmodes=${2:-}; shift 2 ;;
      --no-kernel-checks) kchecks=false; shift ;;
      --pods-to-nodes-direct) p2n=false; shift ;;
      --underlay) underlay=${2:-}; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  local underlay_list
  if [[ $underlay == dual ]]; then
    underlay_list=()
    for k in $(seq "$nodes"); do underlay_list+=("dual$(( k % 2 ? 4 : 6 ))"); done
  else
    IFS=, read -r -a underlay_list <<< "$underlay"
  fi
  ((${#underlay_list[@]} == 1 || ${#underlay_list[@]} == nodes)) || die "--underlay: one, or one per node ($nodes)"
  for u in "${underlay_list[@]}"; do [[ $u =~ ^(4|6|dual4|dual6)$ ]] || die "--underlay: 4, 6, dual, or a list of 4, 6, dual4, dual6 (got $u)"; done
  # underlay_of NODE: that node's underlay (4, 6, dual4 or dual6).
  underlay_of() { if ((${#underlay_list[@]} == 1)); then echo "${underlay_list[0]}"; else echo "${underlay_list[$1 - 1]}"; fi; }
  [[ $underlay == 4 || $mode != kernel-vxlan ]] || die "--kernel-vxlan is an IPv4-underlay reference"
  [[ $underlay == 4 || $underlay == 6 || $mode != static ]] || die "--static: one underlay family (--underlay 4 or 6)"
  [[ $encap == vxlan || $encap == ipip || $encap == none ]] || die "--encap must be vxlan, ipip or none"
  [[ $family == 4 || $family == 6 || $family == dual ]] || die "--family must be 4, 6 or dual"
  ((nodes >= 1 && nodes <= 50 && pods >= 0 && pods <= 60)) || die "--nodes 1-50, --pods 0-60"
  [[ $mode != kernel-vxlan || ($encap == vxlan && $cross == 0 && $family == 4) ]] || die "--kernel-vxlan is an IPv4, one-subnet VXLAN reference"
  [[ $attach == tun || $attach == veth ]] || die "--attach must be tun or veth"
  [[ $attach == tun || ($mode != kernel-vxlan && $encap != none && $cross == 0) ]] || die "--attach veth needs weftd, vxlan or ipip, one subnet"
  ((ulmtu >= 1280 && ulmtu <= 9000)) || die "--underlay-mtu 1280-9000"
  [[ $release =~ ^[0-9]+$ ]] && ((release >= 1)) || die "--block-release SECONDS (at least 1)"
  [[ -z $busy || $busy =~ ^[0-9]+$ ]] || die "--busy-poll MICROSECONDS"
  local dpmode_list
  IFS=, read -r -a dpmode_list <<< "$dpmodes"
  ((${#dpmode_list[@]} == 1 || ${#dpmode_list[@]} == nodes)) || die "--mode: one mode, or one per node ($nodes)"
  for m in "${dpmode_list[@]}"; do [[ $m == userspace || $m == kernel || $m == auto ]] || die "--mode: userspace, kernel or auto (got $m)"; done
  # dpmode_of NODE: that node's dataplane.mode.
  dpmode_of() { if ((${#dpmode_list[@]} == 1)); then echo "${dpmode_list[0]}"; else echo "${dpmode_list[$1 - 1]}"; fi; }
  [[ ! -d $STATE ]] || die "a lab is up already (netns-lab/lab.sh down)"
  need_root
  build
  local mode_key=true
  "$BIN/weftd" --help | grep -q -- '--mode' || mode_key=false
  $mode_key || [[ $dpmodes == userspace ]] || die "--mode: $BIN/weftd has no dataplane.mode"
  mkdir -p "$STATE"
  echo "$nodes $pods $encap $mode $family $cross $attach $underlay" > "$STATE/shape"
  echo "$attach" > "$STATE/attach"
  trap 'echo "lab: setup failed, cleaning up" >&2; down' ERR
  ip netns add $P-ul
  ip -n $P-ul link add br0 type bridge
  ip -n $P-ul link set br0 up
  # The gateway (and "the internet"): a router namespace on the underlay
  # holding 10.99.S.254 / fd00:99:S::fe for each underlay subnet, and an
  # outside host address, 203.0.113.1 and 2001:db8::1 (documentation
  # ranges), on its loopback. It has no route to the pods: pods reach it
  # only through their node's outgoing NAT. With --cross-subnet it also
  # routes between the two underlay subnets.
  ip netns add $P-rt
  ip -n $P-rt link set lo up
  ip -n $P-rt addr add 203.0.113.1/32 dev lo
  ip -n $P-rt addr add 2001:db8::1/128 dev lo
  local subnets=0
  if ((cross)); then
    ip -n $P-ul link add br1 type bridge
    ip -n $P-ul link set br1 up
    subnets="0 1"
  fi
  for s in $subnets; do
    ip -n $P-rt link add r$s mtu "$ulmtu" type veth peer name rt$s netns $P-ul
    ip -n $P-ul link set rt$s mtu "$ulmtu" master br$s up
    ip -n $P-rt addr add 10.99.$s.254/24 dev r$s
    ip -n $P-rt addr add fd00:99:$s::fe/64 dev r$s nodad
    ip -n $P-rt link set r$s up
  done
  ip netns exec $P-rt sysctl -qw net.ipv4.ip_forward=1
  ip netns exec $P-rt sysctl -qw net.ipv6.conf.all.forwarding=1
  for k in $(seq "$nodes"); do
    local s=0
    ((cross && k > (nodes + 1) / 2)) && s=1
    if [[ $(underlay_of "$k") == *6 ]]; then echo "fd00:99:$s::$k" > "$STATE/addr-n$k"; else echo "10.99.$s.$k" > "$STATE/addr-n$k"; fi
    ip netns add $P-n$k
    ip -n $P-n$k link set lo up
    ip -n $P-n$k link add ul0 mtu "$ulmtu" type veth peer name n$k netns $P-ul
    ip -n $P-ul link set n$k mtu "$ulmtu" master br$s up
    ip -n $P-n$k addr add 10.99.$s.$k/24 dev ul0
    ip -n $P-n$k addr add fd00:99:$s::$k/64 dev ul0 nodad
    ip -n $P-n$k link set ul0 up
    # Real nodes have a default route; proxy ARP for 169.254.1.1 relies on it.
    ip -n $P-n$k route add default via 10.99.$s.254
    ip -n $P-n$k -6 route add default via fd00:99:$s::fe
  done
  local pools=() b4 b6
  [[ $family != 6 ]] && pools+=('"10.244.0.0/16"')
  [[ $family != 4 ]] && pools+=('"fd00:244::/48"')
  static_blocks() { # NODE: its blocks in static mode, as a JSON/TOML list
    local l=()
    [[ $family != 6 ]] && l+=("\"10.244.$1.0/26\"")
    [[ $family != 4 ]] && l+=("\"fd00:244:0:$1::/122\"")
    (IFS=,; echo "[${l[*]}]")
  }
  # seed_for NODE: node 1's gossip address as NODE can reach it: its
  # advertised one, or (NODE of the other family alone) its address of
  # NODE's family, where a dual-stack node 1 listens too.
  seed_for() {
    local mine first
    mine=$(underlay_of "$1") first=$(underlay_of 1)
    if [[ $mine == dual* || ${mine: -1} == "${first: -1}" ]]; then cat "$STATE/addr-n1"
    elif [[ $mine == 6 ]]; then echo "fd00:99:0::1"
    else echo "10.99.0.1"; fi
  }
  # A fresh cluster key for this lab (32 random bytes).
  echo "1 $(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" > "$STATE/cluster.key"
  chmod 600 "$STATE/cluster.key"
  if [[ $mode == gossip ]]; then
    # Node keys: each node signs its records, and every node trusts the
    # lab's nodes only, each in a range of the pools of its own (lines
    # `NAME PUBLIC-KEY CIDR...`): node k claims its blocks in
    # 10.244.4k.0/22 and fd00:244:0:k::/64, and nobody else may.
    : > "$STATE/trusted-nodes"
    for k in $(seq "$nodes"); do
      "$BIN/weftd" genkey > "$STATE/node-n$k.key"
      chmod 600 "$STATE/node-n$k.key"
      local ranges=()
      [[ $family != 6 ]] && ranges+=("10.244.$((4 * k)).0/22")
      [[ $family != 4 ]] && ranges+=("fd00:244:0:$k::/64")
      echo "n$k $("$BIN/weftd" pubkey < "$STATE/node-n$k.key") ${ranges[*]}" >> "$STATE/trusted-nodes"
    done
  fi
  if [[ $mode == kernel-vxlan ]]; then
    kernel_vxlan_nodes "$nodes"
  else
    for k in $(seq "$nodes"); do
      {
        echo "node_name = \"n$k\""
        echo "cni_socket = \"$STATE/cni-n$k.sock\""
        echo "admin_socket = \"$STATE/admin-n$k.sock\""
        echo "cni_state_dir = \"$STATE/cni-n$k\""
        echo "[underlay]"; echo "address = \"$(cat "$STATE/addr-n$k")\""
        [[ $(underlay_of "$k") == dual* ]] && echo "dual_stack = true"
        echo "[overlay]"; echo "encap = \"$encap\""; echo "pools = [$(IFS=,; echo "${pools[*]}")]"
        ((cross)) && echo "cross_subnet = true"
        [[ $nat == true ]] || echo "nat_outgoing = false"
        [[ $p2n == true ]] || echo "pod_to_node_via_overlay = false"
        [[ $mode == static ]] && echo "blocks = $(static_blocks "$k")"
        echo "[dataplane]"; echo "stats_file = \"$STATE/stats-n$k.json\""
        # An older weftd (a benchmark's baseline build) has no
        # dataplane.mode: it only has the userspace path.
        $mode_key && echo "mode = \"$(dpmode_of "$k")\""
        [[ $kchecks == true ]] || echo "kernel_checks = false"
        [[ -z $busy ]] || echo "busy_poll_us = $busy"
        [[ $attach == veth ]] && { echo "attach = \"veth\""; echo "veth_host_paths = $hostpaths"; echo "ports_file = \"$STATE/ports-n$k.json\""; }
        # Loopback inside the node's namespace: no clash between nodes.
        echo "[metrics]"; echo "enabled = true"
        if [[ $mode == gossip ]]; then
          echo "[gossip]"; echo "enabled = true"; echo "seeds = [\"$(seed_for "$k")\"]"
          echo "key_file = \"$STATE/cluster.key\""; echo "blocks_file = \"$STATE/blocks-n$k.json\""
          echo "node_key_file = \"$STATE/node-n$k.key\""; echo "trusted_nodes_file = \"$STATE/trusted-nodes\""
          echo "cluster_size = $nodes"; echo "probe_interval_ms = 500"; echo "sync_interval_ms = 1000"
          echo "block_release_after_s = $release"
        else
          for o in $(seq "$nodes"); do
            ((o == k)) && continue
            echo "[[peers]]"; echo "node = \"n$o\""; echo "underlay = \"$(cat "$STATE/addr-n$o")\""; echo "blocks = $(static_blocks "$o")"
          done
        fi
        # Extra TOML for every node (new tables only), e.g. a bench's limits.
        [[ -z ${WEFT_LAB_CONFIG_EXTRA:-} ]] || printf '%s\n' "$WEFT_LAB_CONFIG_EXTRA"
      } > "$STATE/n$k.toml"
    done
    date +%s.%N > "$STATE/started"
    for k in $(seq "$nodes"); do start_weftd "$k"; done
    for k in $(seq "$nodes"); do
      for _ in $(seq 200); do [[ -f $STATE/stats-n$k.json ]] && break; sleep 0.05; done
      [[ -f $STATE/stats-n$k.json ]] || { cat "$STATE/weftd-n$k.log" >&2; die "weftd on n$k did not start"; }
    done
  fi
  # As a runtime would, wire pods once the node's network is ready: with
  # gossip, when weftd has published the block(s) it claimed.
  local want=1
  [[ $family == dual ]] && want=2
  for k in $(seq "$nodes"); do
    local blocks="\"blocks\":$(static_blocks "$k")"
    if [[ $mode == gossip ]]; then
      blocks="\"blocksFile\":\"$STATE/blocks-n$k.json\""
      local got=0
      for _ in $(seq 300); do
        got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["blocks"]))' "$STATE/blocks-n$k.json" 2>/dev/null || echo 0)
        ((got >= want)) && break
        sleep 0.1
      done
      ((got >= want)) || { tail -5 "$STATE/weftd-n$k.log" >&2; die "n$k claimed no block in 30 s"; }
    fi
    echo "$blocks" > "$STATE/pod-blocks-n$k"
    for j in $(seq "$pods"); do add_pod "$k" "$j" "$blocks"; done
  done
  trap - ERR
  echo "== lab up: $nodes nodes x $pods pods, $encap, $mode, IPv$family$( ((cross)) && echo ", two subnets (CrossSubnet)"), $attach attachment, $(underlay_words "$underlay") underlay"
}

# The reference cluster: the kernel's own VXLAN device on every node,
# Flannel-style static entries, no weftd.
kernel_vxlan_nodes() {
  local nodes=$1 k o
  for k in $(seq "$nodes"); do
    ip -n $P-n$k link add vx0 address "02:00:00:00:0b:$(printf %02x "$k")" type vxlan id 1 dstport 4789 local 10.99.0.$k dev ul0 nolearning
    ip -n $P-n$k link set vx0 mtu 1450 up
    ip netns exec $P-n$k sysctl -qw net.ipv4.ip_forward=1
    ip -n $P-n$k route add blackhole 10.244.$k.0/26
    for o in $(seq "$nodes"); do
      ((o == k)) && continue
      local mac; mac="02:00:00:00:0b:$(printf %02x "$o")"
      bridge -n $P-n$k fdb append "$mac" dev vx0 dst 10.99.0.$o
      ip -n $P-n$k neigh add 10.244.$o.0 lladdr "$mac" dev vx0 nud permanent
      ip -n $P-n$k route add 10.244.$o.0/26 via 10.244.$o.0 dev vx0 onlink
    done
  done
}

# add_pod NODE INDEX BLOCKS-JSON: a pod namespace wired by the CNI plugin.
add_pod() {
  local k=$1 j=$2 blocks=$3 pod=$P-n$1-p$2
  ip netns add "$pod"
  ip -n "$pod" link set lo up
  local attach=tun
  [[ -f $STATE/attach ]] && attach=$(cat "$STATE/attach")
  echo "{\"cniVersion\":\"1.1.0\",\"name\":\"weft\",\"type\":\"weft\",\"attach\":\"$attach\",$blocks,\"stateDir\":\"$STATE/cni-n$k\",\"weftdSocket\":\"$STATE/cni-n$k.sock\"}" \
    | ip netns exec $P-n$k env CNI_COMMAND=ADD CNI_CONTAINERID="$pod" CNI_IFNAME=eth0 CNI_NETNS=/var/run/netns/"$pod" "$BIN/weft" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(r["msg"]) if "code" in r else print(",".join(i["address"].split("/")[0] for i in r["ips"]))' \
    > "$STATE/$pod.ip"
}

# add-pod NODE: one more pod on a running lab's node, wired the same way.
add_one_pod() {
  local k=$1 j=1
  [[ -f $STATE/pod-blocks-n$k ]] || die "no node n$k in this lab"
  while [[ -e /var/run/netns/$P-n$k-p$j ]]; do j=$((j + 1)); done
  add_pod "$k" "$j" "$(cat "$STATE/pod-blocks-n$k")"
  echo "$P-n$k-p$j $(cat "$STATE/$P-n$k-p$j.ip")"
}

# add-pods NODE COUNT: COUNT more pods on node NODE, up to 4 wired at once
# (as a runtime starting many pods would); prints how many were wired.
add_pods() {
  local k=$1 count=$2 j=1 todo=()
  [[ -f $STATE/pod-blocks-n$k ]] || die "no node n$k in this lab"
  while ((${#todo[@]} < count)); do
    [[ -e /var/run/netns/$P-n$k-p$j ]] || todo+=("$j")
    j=$((j + 1))
  done
  export -f add_pod
  export P STATE BIN
  printf '%s\n' "${todo[@]}" | xargs -P 4 -I{} bash -c "add_pod $k {} '$(cat "$STATE/pod-blocks-n$k")' || echo failed >&2"
  echo "${#todo[@]}"
}

# del-pods NODE COUNT: removes the COUNT highest-numbered pods of node NODE
# through the CNI plugin's DEL, as a runtime would.
del_pods() {
  local k=$1 count=$2 attach=tun
  [[ -f $STATE/attach ]] && attach=$(cat "$STATE/attach")
  local conf
  conf="{\"cniVersion\":\"1.1.0\",\"name\":\"weft\",\"type\":\"weft\",\"attach\":\"$attach\",$(cat "$STATE/pod-blocks-n$k"),\"stateDir\":\"$STATE/cni-n$k\",\"weftdSocket\":\"$STATE/cni-n$k.sock\"}"
  local pod
  for pod in $(ip netns list | awk '{print $1}' | grep -E "^$P-n$k-p[0-9]+$" | awk -F-p '{print $NF, $0}' | sort -n | tail -n "$count" | cut -d' ' -f2); do
    echo "$conf" | ip netns exec $P-n$k env CNI_COMMAND=DEL CNI_CONTAINERID="$pod" CNI_IFNAME=eth0 "$BIN/weft" >/dev/null \
      || die "CNI DEL of $pod failed"
    ip netns del "$pod"
    rm -f "$STATE/$pod.ip"
  done
}

start_weftd() {
  local k=$1
  ip netns exec $P-n$k env WEFT_LOG="${WEFT_LOG:-info}" "$BIN/weftd" --config "$STATE/n$k.toml" run >> "$STATE/weftd-n$k.log" 2>&1 &
  echo $! > "$STATE/weftd-n$k.pid"
  disown
}

kill_weftd() {
  local f=$STATE/weftd-n$1.pid
  [[ -f $f ]] || die "no weftd on n$1"
  kill -9 "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
}

# Every node has a kernel route (proto 87) for every node's block: the
# control plane converged and the kernel follows it. With veth attachment
# (no kernel routes), every node's fdb holds every node's block.
converged() {
  local nodes mode family attach; read -r nodes _ _ mode family _ attach _ < "$STATE/shape"
  [[ $mode == kernel-vxlan ]] && return 0
  local per=1
  [[ $family == dual ]] && per=2
  for k in $(seq "$nodes"); do
    [[ -f $STATE/weftd-n$k.pid ]] || continue
    if [[ ${attach:-tun} == veth ]]; then
      local b; b=$("$BIN/weftctl" --socket "$STATE/admin-n$k.sock" --json status 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["convergence"]["fdb_blocks"])' 2>/dev/null || echo 0)
      ((b == nodes * per)) || return 1
      continue
    fi
    local n; n=$( (ip -n $P-n$k route show proto 87; ip -n $P-n$k -6 route show proto 87) | wc -l)
    ((n == nodes * per)) || return 1
  done
}

wait_converged() {
  local limit=${1:-60} t0; t0=$(date +%s.%N)
  until converged; do
    python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $t0 < $limit else 1)" || { echo "lab: not converged after $limit s" >&2; return 1; }
    sleep 0.1
  done
  python3 -c "print('%.2f' % ($(date +%s.%N) - $t0))"
}

# partition A B -- C D: nodes on either side drop underlay traffic from the other.
partition() {
  local left=() right=() side=left
  for a in "$@"; do
    if [[ $a == -- ]]; then side=right; continue; fi
    if [[ $side == left ]]; then left+=("$a"); else right+=("$a"); fi
  done
  ((${#left[@]} && ${#right[@]})) || die "usage: partition A.. -- B.."
  local k o
  for k in "${left[@]}"; do for o in "${right[@]}"; do block_pair "$k" "$o"; block_pair "$o" "$k"; done; done
}

block_pair() {
  local ns=$P-n$1
  ip netns exec "$ns" nft list table inet weftlab >/dev/null 2>&1 || {
    ip netns exec "$ns" nft add table inet weftlab
    ip netns exec "$ns" nft add chain inet weftlab input '{ type filter hook input priority 0; policy accept; }'
    ip netns exec "$ns" nft add chain inet weftlab output '{ type filter hook output priority 0; policy accept; }'
  }
  local addr ip=ip; addr=$(cat "$STATE/addr-n$2")
  [[ $addr == *:* ]] && ip=ip6
  ip netns exec "$ns" nft add rule inet weftlab input $ip saddr "$addr" drop
  ip netns exec "$ns" nft add rule inet weftlab output $ip daddr "$addr" drop
}

heal() {
  local nodes; read -r nodes _ < "$STATE/shape"
  for k in $(seq "$nodes"); do ip netns exec $P-n$k nft delete table inet weftlab 2>/dev/null || true; done
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
  read -r nodes npods encap mode family cross attach underlay < "$STATE/shape"
  echo "lab: $nodes nodes x $npods pods, $encap, $mode, IPv$family$( ((cross)) && echo ", two subnets"), ${attach:-tun} attachment, $(underlay_words "${underlay:-4}") underlay"
  for k in $(seq "$nodes"); do
    local pid alive=dead
    pid=$(cat "$STATE/weftd-n$k.pid" 2>/dev/null || true)
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && alive="running (pid $pid)"
    [[ $mode == kernel-vxlan ]] && alive="absent (kernel VXLAN reference)"
    printf 'n%s  weftd %s  %s\n' "$k" "$alive" "$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
d = {k: v for k, v in s["drops"].items() if v}
g = s.get("gossip")
m = "" if g is None else "members up %d down %d, blocks %s, " % (g["members_up"], g["members_down"], ",".join(g["blocks"]) or "none")
print(m + "tx %d rx %d drops %s" % (s["tx_packets"], s["rx_packets"], d or "none"))' "$STATE/stats-n$k.json" 2>/dev/null)"
  done
}

demo() {
  local keep=0 dpmodes=userspace
  while (($#)); do
    case $1 in
      --keep) keep=1; shift ;;
      --mode) dpmodes=${2:-}; shift 2 ;;
      *) die "demo: unknown option $1" ;;
    esac
  done
  need_root
  ((keep)) || trap down EXIT
  trap 'exit 130' INT TERM
  local t0; t0=$(date +%s.%N)
  up --nodes 3 --pods 2 --mode "$dpmodes"
  mapfile -t lines < <(pods)
  echo "== pods"; printf '   %s\n' "${lines[@]}"
  local paths=() k
  for k in 1 2 3; do
    paths+=("n$k $(ip netns exec $P-n$k "$BIN/weftctl" --socket "$STATE/admin-n$k.sock" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')")
  done
  echo "== data path: $(IFS=,; echo "${paths[*]}" | sed 's/,/, /g') (kernel: the kernel's vxlan device, programmed by weftd; userspace: weftd's own workers)"
  # Convergence: from weftd's start until every node has a kernel route to
  # every node's block (gossip membership + block claims + route sync).
  wait_converged 60 >/dev/null
  python3 -c "print('== converged %.2f s after weftd started: every node routes to every block' % ($(date +%s.%N) - $(cat "$STATE/started")))"
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
  # Hosts and the outside: every node to every pod (a node's own traffic
  # through the overlay), every pod to every node's address, every pod to
  # "the internet" (203.0.113.1 in $P-rt, reached through its node's NAT).
  ip netns exec $P-rt iperf3 -s -D -p 5201 --pidfile "$STATE/iperf-rt.pid" >/dev/null
  local nodes; read -r nodes _ < "$STATE/shape"
  for k in $(seq "$nodes"); do
    ip netns exec $P-n$k iperf3 -s -D -p 5201 --pidfile "$STATE/iperf-n$k.pid" >/dev/null
  done
  echo "== hosts and the outside (ping, then a TCP exchange)"
  local hok=0 hbad=0 row
  reach() { # NS ADDR: ping and a TCP exchange
    ip netns exec "$1" ping -c 1 -W 2 "$2" >/dev/null && ip netns exec "$1" iperf3 -c "$2" -n 64K >/dev/null 2>&1
  }
  for k in $(seq "$nodes"); do
    row=""
    for b in "${lines[@]}"; do
      read -r to addr tnode <<< "$b"
      if reach $P-n$k "$addr"; then row+=" ok"; hok=$((hok + 1)); else row+=" FAIL"; hbad=$((hbad + 1)); fi
    done
    printf '   %-10s%s   (node n%s to every pod)\n' "n$k" "$row" "$k"
  done
  for a in "${lines[@]}"; do
    read -r from _ fnode <<< "$a"
    row=""
    for k in $(seq "$nodes"); do
      if reach "$from" "$(cat "$STATE/addr-n$k")"; then row+=" ok"; hok=$((hok + 1)); else row+=" FAIL"; hbad=$((hbad + 1)); fi
    done
    if reach "$from" 203.0.113.1; then row+=" | outside ok"; hok=$((hok + 1)); else row+=" | outside FAIL"; hbad=$((hbad + 1)); fi
    printf '   %-10s%s   (to every node, then to 203.0.113.1)\n' "${from#$P-}" "$row"
  done
  echo "== $hok of $((hok + hbad)) host and outside paths work"
  bad=$((bad + hbad))
  read -r p1 a1 _ <<< "${lines[0]}"
  read -r pn an _ <<< "${lines[-1]}"
  echo "== throughput ${p1#$P-} -> ${pn#$P-} (across nodes, 1 TCP stream, 3 s):"
  ip netns exec "$p1" iperf3 -c "$an" -t 3 -f g | awk '/receiver/{print "   " $7, $8}'
  python3 -c "print('== demo took %.1f s' % ($(date +%s.%N) - $t0))"
  ((bad == 0)) || die "$bad paths failed"
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
  add-pod) need_root; add_one_pod "$1" ;;
  add-pods) need_root; add_pods "$1" "$2" ;;
  del-pods) need_root; del_pods "$1" "$2" ;;
  exec) need_root; pod=$1; shift; ip netns exec "$pod" "$@" ;;
  demo) demo "$@" ;;
  bench) exec netns-lab/bench.sh "$@" ;;
  wait) wait_converged "$@" ;;
  kill) need_root; kill_weftd "$1" ;;
  start) need_root; start_weftd "$1" ;;
  partition) need_root; partition "$@" ;;
  heal) need_root; heal ;;
  chaos) chaos ;;
  *) sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
