#!/usr/bin/env bash
# Runs every test of weft: formatting, lints, unit, property, integration and
# corpus-replay tests, and the benchmarks in test mode (each runs once).
# On a fresh Debian machine it first installs what the tests use (as root).
#
#   ./test.sh
#
# Environment: WEFT_SKIP_TSHARK=1 skips the tshark dissection test when
# tshark cannot be installed, WEFT_SKIP_NETNS=1 the tests that need network
# namespaces, WEFT_SKIP_K8S_VALIDATE=1 the manifest validation (each fails
# loudly otherwise), WEFT_SKIP_RUNTIMES=1 the podman/containerd test.
set -euo pipefail
cd "$(dirname "$0")"

# shellcheck source=netns-lab/common.sh
source netns-lab/common.sh
ensure_commands tshark:tshark ip:iproute2 ping:iputils-ping iptables:iptables nft:nftables \
  iperf3:iperf3 python3:python3 /usr/lib/cni/portmap:containernetworking-plugins c++:g++ \
  ethtool:ethtool podman:podman ctr:containerd containerd:containerd runc:runc \
  /bin/busybox:busybox-static

# The Kubernetes manifest validator (PyPI; it ships the API schemas).
if [[ ! -d target/k8s-validate/kubernetes_validate ]]; then
  echo "== installing kubernetes-validate into target/k8s-validate"
  python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq python3-pip >/dev/null; }
  pip_install=(python3 -m pip install -q --disable-pip-version-check --target target/k8s-validate kubernetes-validate==1.37.0)
  "${pip_install[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (no broken links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== cargo test"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
echo "== fuzzing, smoke mode: every target for ${WEFT_FUZZ_SMOKE_SECONDS:-15} s on stable (fuzz/smoke.sh)"
fuzz/smoke.sh
echo "== image build stage as plain shell (deploy/image/build-stage.sh)"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
deploy/image/build-stage.sh "$rootfs"
for f in usr/local/bin/weftd usr/local/bin/weft usr/local/bin/weftctl usr/local/bin/install-cni usr/local/bin/node-key etc/weft/cni/10-weft.conflist; do
  [[ -e $rootfs/$f ]] || { echo "build stage: $f missing" >&2; exit 1; }
done
"$rootfs/usr/local/bin/weftd" --version
