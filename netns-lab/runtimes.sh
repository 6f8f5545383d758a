#!/usr/bin/env bash
# Real container runtimes on a running lab: podman 4.3 with its CNI backend
# (on nodes 1 and 2) and containerd 1.6's `ctr run --cni` (node 1) drive
# the shipped conflist (deploy/cni/10-weft.conflist: weft, then Debian's
# tuning, portmap and bandwidth), pointed at the lab's paths. One line per
# check; exits non-zero at the first failure.
#
#   netns-lab/runtimes.sh      (a lab of 2+ nodes is up: lab.sh up --nodes 2)
#
# Checks: containers get addresses from their node's blocks; container <->
# container across nodes and container <-> lab pod; port mapping from
# another node; `podman run --ip` (the `ips` capability) honoured, kept
# across `podman restart`, refused when in use;
# weftd killed -9 and restarted with containers running; removal leaves no
# link, route, allocation, iptables rule or endpoint behind.
#
# Nothing global is written: the runtimes run in a private mount namespace
# in which /run (but /run/netns and the lab's state), /var/lib and /opt are
# empty tmpfs and /etc/cni/net.d is the temporary root's; podman's and
# containerd's storage live in that root, removed at the end.
#
# Setup notes (Debian 12 on a VM): `ip netns exec` remounts /sys and crun
# then fails on cgroups, so runtimes enter a node with `nsenter --net`;
# runc, not crun (hybrid cgroups); podman's default ulimits are cleared;
# the image is a busybox-static rootfs (`podman import`, `podman save` for
# `ctr image import`): no registry; `ctr` runs CNI DEL only for foreground
# tasks (`--rm`), which is ctr's behaviour.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${WEFT_LAB_STATE:-/run/weft-lab}
P=${WEFT_LAB_PREFIX:-wl}
BIN=${WEFT_LAB_BIN:-target/release}
export WEFT_LAB_STATE=$STATE WEFT_LAB_PREFIX=$P WEFT_LAB_BIN=$BIN
# shellcheck source=netns-lab/common.sh
source netns-lab/common.sh

die() { echo "runtimes: FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

if [[ -z ${WEFT_RT_ROOT:-} ]]; then
  [[ $(id -u) -eq 0 ]] || die "run as root"
  [[ -f $STATE/addr-n2 ]] || die "no lab with two nodes is up (netns-lab/lab.sh up --nodes 2)"
  ensure_commands podman:podman ctr:containerd containerd:containerd runc:runc \
    /bin/busybox:busybox-static unshare:util-linux iptables:iptables
  if ldd /bin/busybox >/dev/null 2>&1; then
    # Debian's dynamic busybox: the image needs the static one (it
    # replaces the other).
    echo "== installing busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null \
      || die "/bin/busybox is dynamically linked and busybox-static cannot be installed"
  fi
  root=$(mktemp -d /tmp/weft-runtimes.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  WEFT_RT_ROOT=$root WEFT_RT_OUTER=$$ unshare --mount --propagation private "$0" "$@"
  exit $?
fi

# --- inside the private mount namespace -----------------------------------
T=$WEFT_RT_ROOT
BIN=$(realpath "$BIN")
mkdir -p "$T/oldrun" "$T/netd" "$T/opt/cni/bin" "$T/image/bin" "$T/image/www"
mount --rbind /run "$T/oldrun"
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
mount --rbind "$T/oldrun/netns" /run/netns
if [[ $STATE == /run/* ]]; then
  mkdir -p "$STATE"
  mount --rbind "$T/oldrun/${STATE#/run/}" "$STATE"
fi
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /opt
mkdir -p /opt/cni/bin /etc/cni/net.d
mount --bind "$T/netd" /etc/cni/net.d

# The plugins: weft and Debian's reference plugins, where both runtimes look.
for p in tuning portmap bandwidth loopback; do ln -s "/usr/lib/cni/$p" "/opt/cni/bin/$p"; done
ln -s "${WEFT_RT_PLUGIN:-$BIN/weft}" /opt/cni/bin/weft

# The shipped conflist, pointed at node k's lab paths.
conflist() {
  python3 - "$1" "$STATE" <<'EOF'
import json, sys
k, state = sys.argv[1], sys.argv[2]
conf = json.load(open("deploy/cni/10-weft.conflist"))
weft = conf["plugins"][0]
weft["blocksFile"] = f"{state}/blocks-n{k}.json"
weft["stateDir"] = f"{state}/cni-n{k}"
weft["weftdSocket"] = f"{state}/cni-n{k}.sock"
print(json.dumps(conf, indent=1))
EOF
}
conflist 1 > "$T/netd/10-weft.conflist"

# A busybox image, no registry.
cp /bin/busybox "$T/image/bin/"
for c in sh sleep ip ping httpd cat; do ln -s busybox "$T/image/bin/$c"; done
mkdir -p "$T/image/proc" "$T/image/sys" "$T/image/dev" "$T/image/tmp" "$T/image/etc"
echo "hello from weft" > "$T/image/www/index.html"
tar -C "$T/image" -cf "$T/image.tar" .

# podman per node: its own storage and network configuration.
for k in 1 2; do
  mkdir -p "$T/podman-n$k/netd"
  conflist "$k" > "$T/podman-n$k/netd/10-weft.conflist"
  cat > "$T/podman-n$k/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "runc"
tmp_dir = "$T/podman-n$k/tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["/opt/cni/bin"]
network_config_dir = "$T/podman-n$k/netd"
default_network = "weft"
EOF
  cat > "$T/podman-n$k/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$T/podman-n$k/root"
runroot = "$T/podman-n$k/run"
EOF
done
podman_on() {
  local k=$1; shift
  nsenter --net=/run/netns/$P-n$k env CONTAINERS_CONF="$T/podman-n$k/containers.conf" \
    CONTAINERS_STORAGE_CONF="$T/podman-n$k/storage.conf" podman "$@"
}
ctr_() { ctr -a "$T/containerd/containerd.sock" -n weft "$@"; }

cleanup() {
  set +e
  for k in 1 2; do podman_on "$k" rm -af -t 0 >/dev/null 2>&1; done
  if [[ -n ${containerd_pid:-} ]]; then
    ctr_ tasks kill -s KILL weft-ctr >/dev/null 2>&1
    kill "$containerd_pid" 2>/dev/null
    wait "$containerd_pid" 2>/dev/null
  fi
}
trap cleanup EXIT

for k in 1 2; do podman_on "$k" import -q "$T/image.tar" localhost/weft-bb:1 >/dev/null; done
podman_on 1 save -q --format docker-archive -o "$T/image-docker.tar" localhost/weft-bb:1
ok "busybox image imported (podman on n1, n2)"

in_blocks() { # ADDRESS NODE: the address lies in one of the node's published blocks
  python3 - "$1" "$STATE/blocks-n$2.json" <<'EOF'
import ipaddress, json, sys
ip = ipaddress.ip_address(sys.argv[1])
blocks = json.load(open(sys.argv[2]))["blocks"]
sys.exit(0 if any(ip in ipaddress.ip_network(b) for b in blocks) else 1)
EOF
}
allocated() { # ADDRESS NODE: the CNI plugin's IPAM state on NODE holds ADDRESS
  python3 - "$1" "$STATE/cni-n$2/ipam/allocations.json" <<'EOF'
import json, sys
state = json.load(open(sys.argv[2]))
sys.exit(0 if any(a["ip"] == sys.argv[1] for a in state["allocations"]) else 1)
EOF
}
address_of() { podman_on "$1" inspect "$2" --format '{{.NetworkSettings.Networks.weft.IPAddress}}'; }
http_get() { # NODE URL: the body, fetched from node NODE's namespace
  nsenter --net=/run/netns/$P-n$1 python3 -c \
    'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip())' "$2"
}
reaches() { # FROM-DESCRIPTION COMMAND...: ping succeeds within 3 tries
  local what=$1; shift
  for _ in 1 2 3; do "$@" >/dev/null 2>&1 && { ok "$what"; return 0; }; sleep 1; done
  die "$what"
}

# --- podman ------------------------------------------------------------------
podman_on 1 run -d --name c1 localhost/weft-bb:1 sleep 3600 >/dev/null
podman_on 2 run -d --name c2 localhost/weft-bb:1 sleep 3600 >/dev/null
ip1=$(address_of 1 c1); ip2=$(address_of 2 c2)
in_blocks "$ip1" 1 || die "c1's $ip1 is not in n1's blocks"
in_blocks "$ip2" 2 || die "c2's $ip2 is not in n2's blocks"
ok "podman containers got addresses from their node's blocks (c1 $ip1 on n1, c2 $ip2 on n2)"
pod2=$(cat "$STATE/$P-n2-p1.ip"); pod2=${pod2%%,*}
reaches "c1 (n1) -> c2 (n2)" podman_on 1 exec c1 ping -c1 -W1 "$ip2"
reaches "c2 (n2) -> c1 (n1)" podman_on 2 exec c2 ping -c1 -W1 "$ip1"
reaches "c1 (n1) -> lab pod $P-n2-p1" podman_on 1 exec c1 ping -c1 -W1 "$pod2"
reaches "lab pod $P-n2-p1 -> c1" ip netns exec "$P-n2-p1" ping -c1 -W1 "$ip1"

podman_on 1 run -d --name web -p 18080:80 localhost/weft-bb:1 httpd -f -p 80 -h /www >/dev/null
n1=$(cat "$STATE/addr-n1")
for _ in 1 2 3 4 5; do
  got=$(http_get 2 "http://$n1:18080/" 2>/dev/null || true)
  [[ $got == "hello from weft" ]] && break
  sleep 1
done
if [[ $got != "hello from weft" ]]; then
  nsenter --net=/run/netns/$P-n1 iptables-save -t nat >&2
  podman_on 1 ps -a >&2
  die "port mapping: n2 -> $n1:18080 gave ${got:-nothing}"
fi
ok "port mapping: n2 -> n1:18080 -> web:80 (portmap after weft)"

# A static address (`--ip`: the `ips` capability), kept across a restart.
# (Without --ip, podman 4.3's CNI backend asks for nothing on restart: no
# runtimeConfig.ips, no IP= in CNI_ARGS; the container gets a new address.)
fixed=$(python3 -c 'import ipaddress, json, sys; print(ipaddress.ip_network(json.load(open(sys.argv[1]))["blocks"][0])[50])' "$STATE/blocks-n1.json")
podman_on 1 run -d --name c3 --ip "$fixed" localhost/weft-bb:1 sleep 3600 >/dev/null
[[ $(address_of 1 c3) == "$fixed" ]] || die "podman run --ip $fixed gave $(address_of 1 c3)"
podman_on 1 restart -t 0 c3 >/dev/null
[[ $(address_of 1 c3) == "$fixed" ]] || die "podman restart gave c3 $(address_of 1 c3), not $fixed"
reaches "podman run --ip $fixed honoured and kept across restart; c2 reaches it" podman_on 2 exec c2 ping -c1 -W1 "$fixed"
out=$(podman_on 1 run -d --name c4 --ip "$fixed" localhost/weft-bb:1 sleep 3600 2>&1) && die "a second --ip $fixed was accepted"
grep -q "in use" <<<"$out" || die "a second --ip $fixed: $out"
podman_on 1 rm -f c4 >/dev/null 2>&1 || true
ok "a second container asking for $fixed is refused (in use), not given another address"

# --- containerd --------------------------------------------------------------
mkdir -p "$T/containerd"
cat > "$T/containerd/config.toml" <<EOF
version = 2
root = "$T/containerd/root"
state = "$T/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/containerd/containerd.sock"
EOF
containerd --config "$T/containerd/config.toml" > "$T/containerd/log" 2>&1 &
containerd_pid=$!
for _ in $(seq 50); do [[ -S $T/containerd/containerd.sock ]] && break; sleep 0.1; done
ctr_ image import "$T/image-docker.tar" >/dev/null
out=$(nsenter --net=/run/netns/$P-n1 ctr -a "$T/containerd/containerd.sock" -n weft run --rm --cni \
  --snapshotter native localhost/weft-bb:1 weft-ctr sh -c \
  "ip -4 -o addr show eth0; ping -c1 -W2 $ip2 >/dev/null && echo reached-c2; ping -c1 -W2 $pod2 >/dev/null && echo reached-pod" 2>&1) \
  || die "ctr run --cni: $out"
ipc=$(sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' <<<"$out" | head -1)
[[ -n $ipc ]] && in_blocks "$ipc" 1 || die "ctr's container address ${ipc:-none} is not in n1's blocks: $out"
grep -q reached-c2 <<<"$out" || die "ctr container -> c2: $out"
grep -q reached-pod <<<"$out" || die "ctr container -> lab pod: $out"
ok "ctr run --cni on n1: $ipc from n1's blocks, reaches c2 and the lab pod; DEL on exit"
allocated "$ipc" 1 && die "ctr's $ipc still allocated after the task ended"
ok "ctr's address released when its foreground task ended"

# --- weftd killed and restarted under running containers ---------------------
# (lab.sh runs in the mount namespace this script started in: the
# restarted weftd must not live in this private one.)
outside() { nsenter --mount="/proc/$WEFT_RT_OUTER/ns/mnt" -- env -C "$PWD" "$@"; }
outside netns-lab/lab.sh kill 1 >/dev/null
outside netns-lab/lab.sh start 1 >/dev/null
for _ in $(seq 60); do [[ -S $STATE/cni-n1.sock ]] && break; sleep 0.5; done
reaches "after weftd kill -9 and restart on n1: c2 -> c1" podman_on 2 exec c2 ping -c1 -W1 "$ip1"
reaches "after weftd kill -9 and restart on n1: c1 -> c2" podman_on 1 exec c1 ping -c1 -W1 "$ip2"
reaches "after weftd kill -9 and restart on n1: web still mapped" \
  http_get 2 "http://$n1:18080/"

# --- removal -----------------------------------------------------------------
ipw=$(address_of 1 web)
for k in 1 2; do podman_on "$k" rm -af -t 0 >/dev/null; done
for ip in "$ip1" "$ip2" "$ipw" "$fixed"; do
  for k in 1 2; do
    allocated "$ip" "$k" && die "$ip still allocated on n$k"
    ip -n "$P-n$k" route | grep -qw "$ip" && die "a route to $ip is left on n$k"
  done
  nsenter --net=/run/netns/$P-n1 iptables-save | grep -qw "$ip" && die "an iptables rule for $ip is left on n1"
done
ok "podman rm: no allocation, route or iptables rule left"
for k in 1 2; do
  links=$(ip -n "$P-n$k" -o link show | grep -c ': weft[0-9a-f]\{11\}' || true)
  pods=$(find "$STATE" -maxdepth 1 -name "$P-n$k-p*.ip" | wc -l)
  ((links == pods)) || die "n$k has $links pod links for $pods lab pods"
done
ok "no container link left on n1 or n2"
for _ in $(seq 40); do
  left=$("$BIN/weftctl" --socket "$STATE/admin-n2.sock" endpoints --json 2>/dev/null \
    | grep -cwE "$ip1|$ipw|$ipc" || true)
  ((left == 0)) && break
  sleep 0.5
done
((left == 0)) || die "n2 still lists endpoints of removed containers"
ok "the removed containers' endpoints are gone from n2's tables"
echo "runtimes: all checks passed"
