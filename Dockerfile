# The gateway's image, built in two stages: the first installs the locked dependencies and the
# project into a virtual environment, the second copies only that environment, so no wheel, pip
# cache or build tool reaches the image.
#
# The base is a build argument, pinned by digest so a rebuild starts from the same bytes; any
# Debian-like image with python3 (3.11 or newer), its venv module and CA certificates will do:
#   docker build --build-arg BASE_IMAGE=python:3.12-slim-bookworm@sha256:<digest> -t polyrelay .
# Dependencies come from requirements.lock with their hashes (`make lock` refreshes it).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock requirements-build.lock /src/
# Wheels only (no compiler in a slim base), each checked against the lock's hashes. The build
# backend gets a venv of its own, left behind with this stage.
RUN python3 -m venv /opt/build-tools \
 && /opt/build-tools/bin/pip install --require-hashes --only-binary=:all: -r /src/requirements-build.lock \
 && python3 -m venv /opt/polyrelay \
 && /opt/polyrelay/bin/pip install --require-hashes --only-binary=:all: -r /src/requirements.lock
COPY pyproject.toml README.md LICENSE /src/
COPY gateway /src/gateway
COPY providers /src/providers
COPY config /src/config
# The project itself, without dependencies (the lock has them all); then pip leaves the venv, and
# every file becomes readable, none writable, for any user: OpenShift runs the image as an
# arbitrary uid in group 0.
RUN /opt/build-tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist /src \
 && /opt/polyrelay/bin/pip install --no-deps /tmp/dist/*.whl \
 && /opt/polyrelay/bin/python -m pip uninstall --yes pip setuptools \
 && mkdir /app && cp -r /src/config /app/config \
 && chmod -R u=rwX,go=rX /opt/polyrelay /app

FROM ${BASE_IMAGE}
ENV PATH=/opt/polyrelay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080 \
    LOG_FORMAT=json
RUN useradd --system --uid 10001 --gid 0 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin polyrelay
COPY --from=build /opt/polyrelay /opt/polyrelay
COPY --from=build /app /app
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can check it without a runAsUser.
USER 10001:0
EXPOSE 8080
# The metrics port (TELEMETRY_METRICS_PORT), served when TELEMETRY_ENABLED=true.
EXPOSE 9464
# Plain HTTP on the container's own port; with SERVER_TLS_* set, replace this check.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SERVER_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["polyrelay"]
CMD ["serve"]
