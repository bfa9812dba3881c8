# syntax=docker/dockerfile:1
# icpgate container image: a static binary on distroless, running as nonroot,
# with configs/docker/icpgate.yaml as its config. See docs/docker.md:
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t icpgate .
#   docker run -d --name icpgate -p 80:8080 -p 443:8443 -p 127.0.0.1:9090:9090 \
#     --add-host upstream:host-gateway -v icpgate-state:/var/lib/icpgate icpgate

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
# A module proxy reachable from where the build runs, e.g.
# --build-arg GOPROXY=https://goproxy.cn,direct; empty: Go's default.
ARG GOPROXY
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/icpgate ./cmd/icpgate
# The container config and the demo registry it names; /var/lib/icpgate is
# created here so the state volume starts out owned by nonroot. The config
# is checked where it will live, as `serve --check` would on the node.
RUN mkdir -p /out/etc/icpgate /out/var/lib/icpgate \
 && cp configs/docker/icpgate.yaml /out/etc/icpgate/icpgate.yaml \
 && cp configs/registry.sample.jsonl /out/etc/icpgate/registry.jsonl \
 && cp -r /out/etc/icpgate /etc/icpgate \
 && /out/icpgate serve -config /etc/icpgate/icpgate.yaml --check

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/icpgate /usr/local/bin/icpgate
# Config: owned by root, read-only to the gateway. State: the volume.
COPY --from=build /out/etc/icpgate /etc/icpgate
COPY --from=build --chown=nonroot:nonroot /out/var/lib/icpgate /var/lib/icpgate
USER nonroot:nonroot
EXPOSE 8080 8443 9090
VOLUME ["/var/lib/icpgate"]
# The probe reads admin.address from the same config as serve.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["icpgate", "healthcheck", "-config", "/etc/icpgate/icpgate.yaml"]
ENTRYPOINT ["icpgate", "serve", "-config", "/etc/icpgate/icpgate.yaml"]
