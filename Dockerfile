# weft's image: weftd, the weft CNI plugin, weftctl and the CNI network
# configuration, on a small Debian base. The build stage is
# deploy/image/build-stage.sh, which test.sh also runs as plain shell.
#
#   docker build -t weft:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN deploy/image/build-stage.sh /rootfs

FROM debian:bookworm-slim
# nft writes the outgoing-NAT table (nftables' JSON interface); everything
# else (netlink, TUN, sockets) is weftd's own.
RUN apt-get update && apt-get install -y --no-install-recommends nftables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /rootfs/ /
ENTRYPOINT ["/usr/local/bin/weftd"]
CMD ["run"]
