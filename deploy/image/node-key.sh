#!/bin/sh
# The DaemonSet's second init container: this node's gossip signing key.
#
# On the first start it makes the key on the host (0600, written beside its
# target and renamed over it); later starts keep it, so a node's identity
# survives restarts and upgrades and the secret never leaves the node. It
# prints the node's line for the trusted-nodes file, prefixed `weft-trust:`
# (deploy/k8s/trust-nodes.sh collects these lines from the pods' logs), then
# waits until the trusted-nodes file lists this node with this key, so weftd
# starts only once the operator has trusted the node (the pod shows
# Init:1/2 meanwhile; an updated ConfigMap reaches the mounted file within
# a minute or so).
#
#   node-key [KEY_FILE] [TRUSTED_NODES_FILE]
#     (default /var/lib/weft/node.key /etc/weft/trusted/trusted-nodes)
#
# Environment: WEFT_NODE_NAME (required: the Kubernetes node name),
# WEFT_WEFTD (default weftd), WEFT_TRUST_POLL_S (default 5),
# WEFT_TRUST_NO_WAIT=1 (make and print the key, do not wait).
set -eu
key=${1:-/var/lib/weft/node.key}
trusted=${2:-/etc/weft/trusted/trusted-nodes}
name=${WEFT_NODE_NAME:?node-key: WEFT_NODE_NAME must name this node}
weftd=${WEFT_WEFTD:-weftd}
poll=${WEFT_TRUST_POLL_S:-5}

if [ ! -s "$key" ]; then
  mkdir -p "$(dirname "$key")"
  umask 077
  "$weftd" genkey >"$key.tmp"
  mv -f "$key.tmp" "$key"
  echo "node-key: made a new signing key in $key"
fi
# A key readable by others is refused by weftd; say so here, where it is clear.
chmod 0600 "$key"
public=$("$weftd" pubkey <"$key")
echo "weft-trust: $name $public"

[ "${WEFT_TRUST_NO_WAIT:-}" = 1 ] && exit 0

# Listed means a line whose first two fields are this name and this key
# (allowed ranges may follow); `#` starts a comment.
listed() {
  [ -r "$trusted" ] && sed 's/#.*//' "$trusted" |
    awk -v n="$name" -v k="$public" '$1 == n && tolower($2) == k { found = 1 } END { exit !found }'
}
# Says why it waits when that changes, and once a minute.
waited=0
next_note=0
last=
until listed; do
  if [ -r "$trusted" ] && sed 's/#.*//' "$trusted" | awk -v n="$name" '$1 == n { f = 1 } END { exit !f }'; then
    why="$trusted lists $name with another key; waiting for this line: $name $public"
  else
    why="waiting until $trusted lists this node: $name $public"
  fi
  if [ "$why" != "$last" ] || [ "$waited" -ge "$next_note" ]; then
    echo "node-key: $why"
    last=$why
    next_note=$((waited + 60))
  fi
  sleep "$poll"
  waited=$((waited + poll))
done
echo "node-key: $name is trusted; starting weftd"
