#!/usr/bin/env bash
# Runs every test of weft: formatting, lints, unit, property, integration and
# corpus-replay tests, and the benchmarks in test mode (each runs once).
# On a fresh Debian machine it first installs what the tests use (as root).
#
#   ./test.sh
#
# Environment: WEFT_SKIP_TSHARK=1 skips the tshark dissection test when
# tshark cannot be installed (it fails loudly otherwise).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v tshark >/dev/null || missing+=(tshark)
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
command -v iptables >/dev/null || missing+=(iptables)
command -v nft >/dev/null || missing+=(nftables)
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/lib/cni/portmap ]] || missing+=(containernetworking-plugins)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: missing ${missing[*]}; run as root to install them, or install them yourself" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
