# alpha: the funding-rate farming daemon as a container image.
#
#   docker build -t alpha .                        (with a Docker engine)
#   deploy/image/build.sh                          (buildah, no engine, local Debian base)
#
# Runtime contract: runs as uid 10001, writes only to /var/lib/alpha (the state volume: journal,
# control token) and /tmp, so the root filesystem can be mounted read-only. The default strategy
# /etc/alpha/strategy.yaml is demo mode with metrics on 0.0.0.0:9464; mount your own there.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/alpha
COPY pyproject.toml README.md ./
COPY alpha ./alpha
COPY fuses ./fuses
# The CA bundle secret is only needed behind a TLS-intercepting proxy (build.sh passes it).
RUN --mount=type=secret,id=pipcert,required=false \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi; \
    /opt/alpha/bin/pip install --no-cache-dir . \
    && /opt/alpha/bin/alpha --version

FROM ${BASE_IMAGE} AS runtime
ARG ALPHA_UID=10001
RUN groupadd --gid "${ALPHA_UID}" alpha \
    && useradd --uid "${ALPHA_UID}" --gid alpha --home-dir /var/lib/alpha \
       --no-create-home --shell /usr/sbin/nologin alpha \
    && mkdir -p /var/lib/alpha /etc/alpha \
    && chown alpha:alpha /var/lib/alpha \
    && chmod 0750 /var/lib/alpha
COPY --from=builder /opt/alpha /opt/alpha
COPY config/ /app/config/
COPY deploy/image/strategy.yaml /etc/alpha/strategy.yaml
ENV PATH=/opt/alpha/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/alpha \
    MPLCONFIGDIR=/tmp/matplotlib \
    ALPHA_HEALTHZ_URL=http://127.0.0.1:9464/healthz
WORKDIR /var/lib/alpha
VOLUME ["/var/lib/alpha"]
USER ${ALPHA_UID}:${ALPHA_UID}
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ['ALPHA_HEALTHZ_URL'], timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["alpha"]
CMD ["run", "--config", "/etc/alpha/strategy.yaml"]
