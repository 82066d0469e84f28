# The bursard image that the Helm chart (helm/bursar) runs.
#
#   docker build -t bursar:0.1.0 .
#   docker run --rm -p 8081:8081 -p 8082:8082 bursar:0.1.0
#
# Without a Docker engine: sudo tests/docker/build_without_docker.py builds it
# with debootstrap + chroot and runs it until healthy (docs/operations.md).
#
# Stage 1 builds bursard and bursarctl (Release) with the project's own
# dependency script; stage 2 holds only the two binaries, the Debian packages
# of the shared libraries they load (found with ldd + dpkg-query, so the list
# follows the build), and a non-root user. The chart runs it with a read-only
# root filesystem: bursard writes only to --data_dir (a volume) and /tmp.
ARG DEBIAN_IMAGE=debian:12

FROM ${DEBIAN_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build --target bursard bursarctl -j"$(nproc)" \
 && strip /build/server/bursard /build/cli/bursarctl
# The packages that own every shared library the binaries load.
RUN ldd /build/server/bursard /build/cli/bursarctl \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u \
    | while read -r lib; do \
        dpkg-query -S "$lib" 2>/dev/null \
          || dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null \
          || { echo "no Debian package owns $lib" >&2; exit 1; }; \
      done \
    | cut -d: -f1 | sort -u > /build/runtime-packages.txt \
 && cat /build/runtime-packages.txt

FROM ${DEBIAN_IMAGE} AS runtime
COPY --from=build /build/runtime-packages.txt /tmp/runtime-packages.txt
# apt-get clean: the downloaded .debs (about 90 MB) would otherwise stay in
# the image wherever the base lacks debian:12's docker-clean apt hook (found
# by tests/docker/build_without_docker.py, whose base is a plain debootstrap).
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
      ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
# The "bursar" user (uid/gid 10001, the chart's podSecurityContext).
RUN groupadd --system --gid 10001 bursar \
 && useradd --system --uid 10001 --gid bursar --home-dir /var/lib/bursar \
      --no-create-home --shell /usr/sbin/nologin bursar \
 && install -d -o bursar -g bursar -m 0750 /var/lib/bursar \
 && install -d -m 0755 /etc/bursar/policies
COPY --from=build /build/server/bursard /build/cli/bursarctl /usr/local/bin/
# The example policies, for `docker run` without a policy volume. The chart
# mounts its own files at /etc/bursar/policies instead.
COPY policies/example /usr/share/bursar/policies/example
USER 10001:10001
WORKDIR /var/lib/bursar
# 8081: gRPC (Decision, Admin, health, reflection); 8082: HTTP (/v1/check,
# /v1/report, /metrics, and the probes /healthz and /readyz).
EXPOSE 8081 8082
ENTRYPOINT ["/usr/local/bin/bursard"]
# Plaintext for a quick try only; production passes --tls_cert/--tls_key
# (see helm/bursar).
CMD ["--listen=0.0.0.0:8081", "--http_listen=0.0.0.0:8082", \
     "--data_dir=/var/lib/bursar/data", \
     "--policy_dir=/usr/share/bursar/policies/example", \
     "--insecure", "--allow_insecure_remote"]
