# syntax=docker/dockerfile:1
# icpgate container image: a static binary on distroless, running as nonroot.
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t icpgate .
#   docker run -p 8080:8080 -p 8443:8443 -p 127.0.0.1:9090:9090 icpgate
# Mount your own /etc/icpgate/icpgate.yaml (and registry file) to go live.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/icpgate ./cmd/icpgate
# The sample config listens on loopback; inside a container the listeners
# and the admin API must listen on every interface to be reachable. Writable
# state (page-mode certificates) goes to the data volume, not next to the
# config, which is mounted read-only.
RUN mkdir -p /out/etc/icpgate /out/var/lib/icpgate \
 && sed -e '/address:/ s/"127\.0\.0\.1:\(8080\|8443\|9090\)"/"0.0.0.0:\1"/; s#storage_dir: data/certmagic#storage_dir: /var/lib/icpgate/certmagic#' configs/icpgate.yaml > /out/etc/icpgate/icpgate.yaml \
 && cp configs/registry.sample.jsonl /out/etc/icpgate/ \
 && grep -q '0.0.0.0:9090' /out/etc/icpgate/icpgate.yaml \
 && grep -q 'storage_dir: /var/lib/icpgate/certmagic' /out/etc/icpgate/icpgate.yaml

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/icpgate /usr/local/bin/icpgate
COPY --from=build --chown=nonroot:nonroot /out/etc/icpgate /etc/icpgate
COPY --from=build --chown=nonroot:nonroot /out/var/lib/icpgate /var/lib/icpgate
USER nonroot:nonroot
EXPOSE 8080 8443 9090
VOLUME ["/etc/icpgate", "/var/lib/icpgate"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["icpgate", "healthcheck", "-url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["icpgate", "serve", "-config", "/etc/icpgate/icpgate.yaml"]
