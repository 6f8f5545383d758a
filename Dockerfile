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
COPY --from=build /rootfs/ /
# weftd needs no shell tools: netlink, TUN and sockets are its own.
ENTRYPOINT ["/usr/local/bin/weftd"]
CMD ["run"]
