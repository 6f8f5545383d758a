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
#   deploy/k8s/trust-nodes.sh > trusted-nodes
#   kubectl -n kube-system create configmap weft-trusted-nodes \
#     --from-file=trusted-nodes --dry-run=client -o yaml | kubectl apply -f -
#
# Options (for use without a cluster, and for tests):
#   --logs FILE     read the announcements from FILE instead of kubectl logs
#   --current FILE  the current trusted-nodes file instead of the ConfigMap's
set -euo pipefail

logs= current=
while (($#)); do
  case $1 in
    --logs) logs=${2:?--logs needs a file}; shift 2 ;;
    --current) current=${2:?--current needs a file}; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "trust-nodes: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

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
awk '
  FILENAME == ARGV[1] {
    print
    line = $0; sub(/#.*/, "", line); split(line, f, " ")
    if (f[1] != "") { listed[f[1]] = tolower(f[2]) }
    next
  }
  match($0, /weft-trust: [A-Za-z0-9._-]+ [0-9a-fA-F]+/) {
    split(substr($0, RSTART + 12, RLENGTH - 12), f, " ")
    if (length(f[2]) != 64) next
    if (!(f[1] in seen)) order[++n] = f[1]
    seen[f[1]] = tolower(f[2])
  }
  END {
    for (i = 1; i <= n; i++) {
      name = order[i]; key = seen[name]
      if (!(name in listed)) {
        print name " " key
        added++
      } else if (listed[name] != key) {
        printf "trust-nodes: %s announces key %s but is listed with %s; left as listed\n",
          name, key, listed[name] > "/dev/stderr"
        conflicts++
      }
    }
    printf "trust-nodes: %d node(s) added, %d conflicting key(s) left as listed\n",
      added, conflicts > "/dev/stderr"
  }
' <(current_file) <(announcements)
