#!/usr/bin/env bash
# The image's build stage, as plain shell (the Dockerfile runs exactly
# this): build the release binaries and lay out the final image's files
# under ROOTFS.
#
#   deploy/image/build-stage.sh ROOTFS
set -euo pipefail
cd "$(dirname "$0")/../.."
rootfs=${1:?usage: build-stage.sh ROOTFS}
cargo build --release --locked --bins
install -d "$rootfs/usr/local/bin" "$rootfs/etc/weft/cni"
install -m 0755 target/release/weftd target/release/weft target/release/weftctl "$rootfs/usr/local/bin/"
install -m 0755 deploy/image/install-cni.sh "$rootfs/usr/local/bin/install-cni"
install -m 0755 deploy/image/node-key.sh "$rootfs/usr/local/bin/node-key"
install -m 0644 deploy/cni/10-weft.conflist "$rootfs/etc/weft/cni/10-weft.conflist"
echo "build stage: $(ls "$rootfs/usr/local/bin" | tr '\n' ' ')in $rootfs"
