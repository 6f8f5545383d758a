# The lab's chaos scenarios (sourced by lab.sh, which provides up/down,
# pods, kill_weftd/start_weftd, partition/heal, wait_converged, add_pod).
# Each scenario prints one PASS/FAIL line; after each, every pod must reach
# every pod and nothing may have leaked.

CHAOS_FAILED=0

verdict() { # verdict OK NAME DETAIL
  if (($1)); then printf 'PASS  %-14s %s\n' "$2" "$3"; else printf 'FAIL  %-14s %s\n' "$2" "$3"; CHAOS_FAILED=$((CHAOS_FAILED + 1)); fi
}

now() { date +%s.%N; }
since() { python3 -c "print('%.2f' % ($(now) - $1))"; }

# Every pod reaches every pod (3 tries each).
all_reach() {
  local lines a b
  mapfile -t lines < <(pods)
  for a in "${lines[@]}"; do
    read -r from _ _ <<< "$a"
    for b in "${lines[@]}"; do
      read -r to addr _ <<< "$b"
      [[ $from == "$to" ]] && continue
      ip netns exec "$from" ping -c 3 -i 0.2 -W 1 "$addr" 2>/dev/null | grep -q ' 0% packet loss\| [12] received' || return 1
    done
  done
}

# Nothing leaked: namespaces, host veths and weft routes are what the lab
# shape says, and IPAM holds one address per pod.
no_leaks() {
  local nodes npods; read -r nodes npods _ < "$STATE/shape"
  local ns; ns=$(ip netns list | awk '{print $1}' | grep -c "^$P-") || true
  # The underlay bridge's and the router's namespaces, the nodes, the pods.
  ((ns == 2 + nodes + nodes * npods)) || { echo "namespaces: $ns"; return 1; }
  for k in $(seq "$nodes"); do
    local v; v=$(ip -n $P-n$k -o link show type veth | grep -c ' weft') || true
    ((v == npods)) || { echo "n$k veths: $v"; return 1; }
    local r; r=$(ip -n $P-n$k route show proto 87 | wc -l)
    ((r == nodes)) || { echo "n$k weft routes: $r"; return 1; }
    local a; a=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["allocations"]))' "$STATE/cni-n$k/ipam/allocations.json" 2>/dev/null || echo 0)
    ((a == npods)) || { echo "n$k IPAM allocations: $a"; return 1; }
  done
}

after() { # after NAME: the checks every scenario ends with
  local detail=""
  wait_converged 60 >/dev/null || detail="not converged; "
  all_reach || detail+="not every pod reaches every pod; "
  local leak; leak=$(no_leaks) || detail+="leak: $leak"
  verdict "$([[ -z $detail ]] && echo 1 || echo 0)" "$1/after" "${detail:-connectivity full, nothing leaked}"
}

pod_addr() { pods | awk -v n="$1" '$1 == n {print $2}'; }

# kill -9 weftd on the node of the stream's receiver, restart it after 1 s,
# under a running TCP stream and a 100/s ping; measure the interruption.
scenario_kill_restart() {
  local src=$P-n1-p1 dst=$P-n3-p1 addr; addr=$(pod_addr "$dst")
  ip netns exec "$dst" iperf3 -s -1 -D -p 5301 --pidfile "$STATE/iperf-chaos-1.pid" >/dev/null
  sleep 0.3
  ip netns exec "$src" iperf3 -c "$addr" -p 5301 -t 8 -b 200M > "$STATE/chaos-iperf.log" 2>&1 &
  local iperf=$!
  ip netns exec "$src" ping -i 0.01 -w 8 "$addr" > "$STATE/chaos-ping.log" 2>&1 &
  local ping=$!
  sleep 2
  kill_weftd 3
  sleep 1
  start_weftd 3
  wait "$ping" || true
  local ok=1; wait "$iperf" || ok=0
  local sent recv
  sent=$(awk '/transmitted/{print $1}' "$STATE/chaos-ping.log")
  recv=$(awk '/transmitted/{print $4}' "$STATE/chaos-ping.log")
  local gap; gap=$(python3 -c "print('%.2f' % ((${sent:-0} - ${recv:-0}) * 0.01))")
  verdict "$ok" kill-restart "TCP stream survived: $([[ $ok == 1 ]] && echo yes || echo no); interruption ~${gap} s (pings lost x 10 ms)"
  after kill-restart
}

# A node leaves (weftd killed, not restarted): its routes are withdrawn
# everywhere; it comes back and everything converges.
scenario_leave_rejoin() {
  local block; block=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blocks"][0])' "$STATE/blocks-n2.json")
  kill_weftd 2
  local t0; t0=$(now) ok=0
  for _ in $(seq 300); do
    if ! ip -n $P-n1 route show proto 87 | grep -q "^$block" && ! ip -n $P-n3 route show proto 87 | grep -q "^$block"; then ok=1; break; fi
    sleep 0.1
  done
  local gone; gone=$(since "$t0")
  start_weftd 2
  t0=$(now)
  wait_converged 60 >/dev/null || ok=0
  verdict "$ok" leave-rejoin "routes withdrawn everywhere ${gone} s after the node left; back in $(since "$t0") s"
  after leave-rejoin
}

scenario_partition() {
  local b1; b1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blocks"][0])' "$STATE/blocks-n1.json")
  local t0; t0=$(now) ok=0
  partition 1 -- 2 3
  for _ in $(seq 300); do
    ip -n $P-n2 route show proto 87 | grep -q "^$b1" || { ok=1; break; }
    sleep 0.1
  done
  local seen; seen=$(since "$t0")
  heal
  t0=$(now)
  wait_converged 60 >/dev/null || ok=0
  verdict "$ok" partition "n1 cut off from n2+n3: its routes gone on n2 ${seen} s after the cut began; healed and converged in $(since "$t0") s"
  after partition
}

# 10 % loss on every node's underlay for 20 s: nobody is declared dead (no
# route withdrawn) and a TCP transfer completes.
scenario_loss() {
  local nodes; read -r nodes _ < "$STATE/shape"
  for k in $(seq "$nodes"); do
    ip netns exec $P-n$k nft add table inet weftloss
    ip netns exec $P-n$k nft add chain inet weftloss input '{ type filter hook input priority 0; policy accept; }'
    ip netns exec $P-n$k nft add rule inet weftloss input iifname ul0 numgen random mod 10 == 0 drop
  done
  local addr; addr=$(pod_addr $P-n2-p1)
  ip netns exec $P-n2-p1 iperf3 -s -1 -D -p 5302 --pidfile "$STATE/iperf-chaos-2.pid" >/dev/null
  sleep 0.3
  local ok=1 withdrawn=0
  ip netns exec $P-n1-p1 iperf3 -c "$addr" -p 5302 -n 20M > "$STATE/chaos-loss.log" 2>&1 &
  local iperf=$!
  for _ in $(seq 200); do
    converged || withdrawn=$((withdrawn + 1))
    sleep 0.1
  done
  wait "$iperf" || ok=0
  for k in $(seq "$nodes"); do ip netns exec $P-n$k nft delete table inet weftloss; done
  ((withdrawn == 0)) || ok=0
  verdict "$ok" loss-10pct "20 s at 10 % underlay loss: route withdrawals seen in $withdrawn of 200 checks; 20 MB TCP transfer $(grep -q receiver "$STATE/chaos-loss.log" && echo completed || echo FAILED)"
  after loss-10pct
}

# 100 pods added and removed on n1 and n2 while a ping runs between two
# fixed pods; nothing may leak and the fixed pods must keep talking.
scenario_pod_churn() {
  local addr; addr=$(pod_addr $P-n2-p1)
  ip netns exec $P-n1-p1 ping -i 0.05 "$addr" > "$STATE/chaos-churn-ping.log" 2>&1 &
  local ping=$!
  local fails=0 i k
  for i in $(seq 50); do
    for k in 1 2; do
      local pod=$P-n$k-c$i
      local conf="{\"cniVersion\":\"1.1.0\",\"name\":\"weft\",\"type\":\"weft\",\"blocksFile\":\"$STATE/blocks-n$k.json\",\"stateDir\":\"$STATE/cni-n$k\",\"weftdSocket\":\"$STATE/cni-n$k.sock\"}"
      ip netns add "$pod"
      echo "$conf" | ip netns exec $P-n$k env CNI_COMMAND=ADD CNI_CONTAINERID="$pod" CNI_IFNAME=eth0 CNI_NETNS=/var/run/netns/"$pod" "$BIN/weft" | grep -q '"ips"' || fails=$((fails + 1))
      echo "$conf" | ip netns exec $P-n$k env CNI_COMMAND=DEL CNI_CONTAINERID="$pod" CNI_IFNAME=eth0 CNI_NETNS=/var/run/netns/"$pod" "$BIN/weft" >/dev/null || fails=$((fails + 1))
      ip netns del "$pod"
    done
  done
  kill -INT "$ping" 2>/dev/null; wait "$ping" 2>/dev/null || true
  local loss; loss=$(grep -o '[0-9.]*% packet loss' "$STATE/chaos-churn-ping.log" || echo "?")
  verdict "$([[ $fails == 0 ]] && echo 1 || echo 0)" pod-churn "100 pods added and removed: $fails CNI failures; ping between fixed pods meanwhile: $loss"
  after pod-churn
}

chaos() {
  need_root
  [[ -d $STATE ]] && die "a lab is up already (netns-lab/lab.sh down)"
  trap down EXIT
  trap 'exit 130' INT TERM
  local t0; t0=$(now)
  echo "== chaos: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  up --nodes 3 --pods 2
  wait_converged 60 >/dev/null || die "the lab did not converge"
  scenario_kill_restart
  scenario_leave_rejoin
  scenario_partition
  scenario_loss
  scenario_pod_churn
  echo "== chaos took $(since "$t0") s: $CHAOS_FAILED failed"
  ((CHAOS_FAILED == 0))
}
