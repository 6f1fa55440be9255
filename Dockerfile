# featbit-agent container image: docker build -t featbit-agent .
#
# The build stage runs scripts/install-release, the same script CI runs (on its debug build), and the runtime stage
# copies what it installed: the binary (release: Swift runtime linked statically) and nothing else. featbit.db lives
# on the volume /var/lib/featbit-agent; the process runs as the unprivileged user 10001. Configure it with the
# environment (README "Configuration"); cluster/kubernetes/statefulset.yaml runs it as a mesh.

FROM swift:6.3-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/install-release --configuration release --prefix /opt/featbit-agent

FROM debian:bookworm-slim
# libsqlite3-0: featbit.db; ca-certificates: wss:// and https:// to the FeatBit server. The rest the binary needs
# (libc, libstdc++, libgcc, zlib) is in the base image; CI compares this list with what install-release reports.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libsqlite3-0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 featbit \
    && useradd --system --uid 10001 --gid featbit --home-dir /var/lib/featbit-agent --shell /usr/sbin/nologin featbit \
    && install -d -o featbit -g featbit -m 0700 /var/lib/featbit-agent
COPY --from=build /opt/featbit-agent/ /usr/local/
ENV DbPath=/var/lib/featbit-agent/featbit.db \
    BindAddress=0.0.0.0 \
    Port=6100
VOLUME ["/var/lib/featbit-agent"]
WORKDIR /var/lib/featbit-agent
EXPOSE 6100 7100
USER 10001:10001
# No curl in the image: bash's /dev/tcp asks /health/liveness (CI runs this very command against a live agent).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${Port:-6100} && printf 'GET /health/liveness HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && grep -q '^Healthy' <&3"]
# SIGTERM drains (SDK sockets closed with 1001, leadership handed over) and exits 0 within 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["featbit-agent"]
