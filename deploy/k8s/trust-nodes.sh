#!/usr/bin/env bash
# Builds the trusted-nodes file from what the nodes announce: each weft pod's
# node-key init container prints `weft-trust: NAME PUBLIC-KEY`. The lines of
# the current file are kept as they are (comments, allowed ranges); nodes not
# yet listed are appended; a node that now presents a different key (a
# reinstalled host, or someone posing as it) is NOT changed, only reported:
# delete its line yourself once you know why, and run this again.
#
# Review the output, then publish it (every weftd re-reads it within seconds
# of the ConfigMap reaching its node; waiting node-key containers go on):
#
#   deploy/k8s/trust-nodes.sh --ranges 10.244.0.0/16:22 > trusted-nodes
#   kubectl -n kube-system create configmap weft-trusted-nodes \
#     --from-file=trusted-nodes --dry-run=client -o yaml | kubectl apply -f -
#
# Options:
#   --ranges POOL:LEN  give each node added an allowed range of its own: the
#                   first /LEN of the IPv4 pool POOL that no listed range
#                   overlaps. A node then claims blocks only inside it, so
#                   no member can take another's block with a backdated
#                   claim. Nodes get no more blocks than a /LEN holds; a node
#                   that finds no free range is not added (exit status 3).
#                   LEN must be no longer than the pod block size (26 by
#                   default), or the node can claim nothing.
#   --logs FILE     read the announcements from FILE instead of kubectl logs
#   --current FILE  the current trusted-nodes file instead of the ConfigMap's
set -euo pipefail

logs= current= ranges=
while (($#)); do
  case $1 in
    --ranges) ranges=${2:?--ranges needs POOL:LEN}; shift 2 ;;
    --logs) logs=${2:?--logs needs a file}; shift 2 ;;
    --current) current=${2:?--current needs a file}; shift 2 ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "trust-nodes: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -n $ranges && ! $ranges =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}:[0-9]{1,2}$ ]]; then
  echo "trust-nodes: --ranges $ranges: expected an IPv4 POOL/PREFIX:LEN, e.g. 10.244.0.0/16:22" >&2
  exit 2
fi

announcements() {
  if [[ -n $logs ]]; then
    cat -- "$logs"
  else
    kubectl -n kube-system logs -l app.kubernetes.io/name=weft -c node-key \
      --tail=-1 --max-log-requests=1000
  fi
}

current_file() {
  if [[ -n $current ]]; then
    cat -- "$current"
  else
    kubectl -n kube-system get configmap weft-trusted-nodes \
      -o 'jsonpath={.data.trusted-nodes}' 2>/dev/null || true
  fi
}

# Names and keys are checked by shape here; weftd checks them again.
# IPv4 arithmetic in awk's doubles is exact (below 2^53).
awk -v ranges="$ranges" '
  function ip2n(s,   o) {
    if (split(s, o, ".") != 4) return -1
    return ((o[1] * 256 + o[2]) * 256 + o[3]) * 256 + o[4]
  }
  function n2ip(n) {
    return int(n / 16777216) "." int(n / 65536) % 256 "." int(n / 256) % 256 "." n % 256
  }
  function pow2(k,   p) { p = 1; while (k-- > 0) p *= 2; return p }
  # Marks the ranges of the pool that CIDR c overlaps as used.
  function mark(c,   f, start, end, i, last) {
    if (!pool_len || split(c, f, "/") != 2 || index(f[1], ":")) return
    start = ip2n(f[1]); if (start < 0) return
    end = start + pow2(32 - f[2]) - 1
    if (end < base || start > base + count * size - 1) return
    i = start < base ? 0 : int((start - base) / size)
    last = int((end - base) / size); if (last > count - 1) last = count - 1
    for (; i <= last; i++) used[i] = 1
  }
  BEGIN {
    if (ranges != "") {
      split(ranges, r, ":"); split(r[1], p, "/")
      base = ip2n(p[1]); pool_len = p[2] + 0; len = r[2] + 0
      if (pool_len > 32 || len > 32 || len < pool_len || len - pool_len > 20 ||
          base % pow2(32 - pool_len) != 0) {
        print "trust-nodes: --ranges " ranges ": expected POOL (no host bits) and POOL prefix <= LEN <= 32, at most 2^20 ranges" > "/dev/stderr"
        bad_args = 1
        exit 2
      }
      size = pow2(32 - len); count = pow2(len - pool_len)
    }
  }
  FILENAME == ARGV[1] {
    print
    line = $0; sub(/#.*/, "", line); nf = split(line, f, " ")
    if (f[1] != "") { listed[f[1]] = tolower(f[2]) }
    for (i = 3; i <= nf; i++) mark(f[i])
    next
  }
  match($0, /weft-trust: [A-Za-z0-9._-]+ [0-9a-fA-F]+/) {
    split(substr($0, RSTART + 12, RLENGTH - 12), f, " ")
    if (length(f[2]) != 64) next
    if (!(f[1] in seen)) order[++n] = f[1]
    seen[f[1]] = tolower(f[2])
  }
  END {
    if (bad_args) exit 2
    for (i = 1; i <= n; i++) {
      name = order[i]; key = seen[name]
      if (!(name in listed)) {
        extra = ""
        if (pool_len) {
          for (j = 0; j < count && used[j]; j++) {}
          if (j == count) {
            printf "trust-nodes: no free /%d left in %s for %s; not added\n", len, r[1], name > "/dev/stderr"
            full++
            continue
          }
          used[j] = 1
          extra = " " n2ip(base + j * size) "/" len
        }
        print name " " key extra
        added++
      } else if (listed[name] != key) {
        printf "trust-nodes: %s announces key %s but is listed with %s; left as listed\n",
          name, key, listed[name] > "/dev/stderr"
        conflicts++
      }
    }
    printf "trust-nodes: %d node(s) added, %d conflicting key(s) left as listed\n",
      added, conflicts > "/dev/stderr"
    if (full) exit 3
  }
' <(current_file) <(announcements)
