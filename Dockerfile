# syntax=docker/dockerfile:1
#
# p2pnode in a container: a static binary (CGO_ENABLED=0) on distroless
# static, running as the image's non-root user (65532). Untested here (no
# Docker engine on the build machines): see README.md, "Running it in a
# container".
#
#   docker build -t p2pnode --build-arg VERSION=$(git describe --tags --always) .
#   docker run -d --name p2pnode -p 4001:4001 \
#     -v /etc/p2pnode:/etc/p2pnode:ro -v p2pnode-data:/var/lib/p2pnode p2pnode
#   docker exec p2pnode p2pnode status --data-dir /var/lib/p2pnode

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/p2pnode ./cmd/p2pnode \
    && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/p2pnode /usr/local/bin/p2pnode
# The data directory, owned by the non-root user; mount a volume on it.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /var/lib/p2pnode
USER 65532:65532
VOLUME ["/var/lib/p2pnode"]
# The listen port of the example configuration; metrics (if enabled) are
# best kept unpublished.
EXPOSE 4001
# The control socket answers only while the node runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s \
    CMD ["/usr/local/bin/p2pnode", "status", "--data-dir", "/var/lib/p2pnode"]
# /etc/p2pnode/p2pnode.yaml names the key and allowlist (mount them read
# only; the key file must be mode 0600 and owned by 65532). Its listen
# addresses must be 0.0.0.0 for -p to reach them.
ENTRYPOINT ["/usr/local/bin/p2pnode"]
CMD ["run", "--config", "/etc/p2pnode/p2pnode.yaml", "--data-dir", "/var/lib/p2pnode", "--no-stdin", "--json"]
