# syntax=docker/dockerfile:1
#
# chestfs as a container image: one static binary on Alpine, with fuse3 for
# fusermount3 (the setuid helper that lets a non-root user mount FUSE), run as
# a non-root user. See deploy/README.md for how to run it.
#
#   docker build -t chestfs .        (podman build works the same)
#   docker run --rm chestfs --help
#
# chestfs needs no cgo (pure Go crypto, FUSE protocol, Azure SDK), so the
# binary is static and runs on any base image; CGO_ENABLED=0 makes sure.

ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.22

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS build
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/chestfs ./cmd/chestfs

FROM alpine:${ALPINE_VERSION}
# fuse3: fusermount3, setuid root so that a non-root chestfs can mount
# (outside a user namespace it owns, chestfs falls back to it).
# user_allow_other: lets the non-root user pass --allow-other, so that other
# users (an application container running as another uid) can read the mount.
# ca-certificates: TLS to Blob Storage, Key Vault and Azure Attestation.
RUN apk add --no-cache fuse3 ca-certificates \
 && chmod 4755 /usr/bin/fusermount3 \
 && echo user_allow_other >> /etc/fuse.conf \
 && addgroup -S -g 65532 chestfs \
 && adduser -S -D -H -u 65532 -G chestfs -s /sbin/nologin chestfs \
 && mkdir -p /mnt/chestfs /run/chestfs \
 && chown chestfs:chestfs /mnt/chestfs /run/chestfs
COPY --from=build /out/chestfs /usr/local/bin/chestfs
USER 65532:65532
# chestfs run is a fine PID 1: it reaps zombies and forwards signals to the
# application it wraps.
ENTRYPOINT ["/usr/local/bin/chestfs"]
CMD ["--help"]
