#!/bin/sh
# The DaemonSet's init container: installs the weft CNI plugin and its
# network configuration on the host, as Calico and Flannel do. Each file is
# copied next to its target and renamed over it, so a runtime never sees a
# half-written plugin or conflist.
#
#   install-cni [HOST_CNI_BIN] [HOST_CNI_CONF]   (default /host/opt/cni/bin /host/etc/cni/net.d)
set -eu
src_bin=${WEFT_SRC_BIN:-/usr/local/bin/weft}
src_conf=${WEFT_SRC_CONF:-/etc/weft/cni/10-weft.conflist}
bin=${1:-/host/opt/cni/bin}
conf=${2:-/host/etc/cni/net.d}
mkdir -p "$bin" "$conf"
cp "$src_bin" "$bin/.weft.tmp"
chmod 0755 "$bin/.weft.tmp"
mv -f "$bin/.weft.tmp" "$bin/weft"
cp "$src_conf" "$conf/.10-weft.conflist.tmp"
mv -f "$conf/.10-weft.conflist.tmp" "$conf/10-weft.conflist"
echo "install-cni: weft -> $bin, 10-weft.conflist -> $conf"
