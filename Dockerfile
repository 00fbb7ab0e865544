# syntax=docker/dockerfile:1
# Market Spine image: one image for the operator (`spine operator run`), the pipeline Jobs
# (`spine run ...`), the CronJobs and the migration hook (`spine db upgrade`).
#
#   docker build --build-arg VERSION=0.1.0 -t market-spine:0.1.0 .
#
# Every dependency ships as a binary wheel (psycopg[binary], pydantic-core, ...), so neither stage
# needs a compiler; the runtime stage receives only the finished virtual environment.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: build the project wheel and install it with its dependencies into /opt/venv ----------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies change less often than the code: install them from pyproject.toml alone first, so
# this layer stays cached across code changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY README.md ./
COPY operator ./operator
# Pre-compile bytecode: the runtime root filesystem is read-only, Python cannot write .pyc there.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --no-deps /wheels/market_spine-*.whl \
    && python -m compileall -q /opt/venv \
    && spine --help > /dev/null

# --- runtime: slim, non-root, no build tools -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="market-spine" \
      org.opencontainers.image.description="Kopf operator and FINRA OTC Transparency pipelines for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/market-spine/market-spine"

# The UID/GID match the chart's podSecurityContext (runAsUser/runAsGroup 10001).
RUN groupadd --system --gid 10001 spine \
    && useradd --system --uid 10001 --gid spine --home-dir /home/spine --create-home \
       --shell /usr/sbin/nologin spine

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MARKET_SPINE_VERSION=${VERSION}

USER 10001:10001
WORKDIR /home/spine

# health (/healthz) and metrics (/metrics) of `spine operator run`
EXPOSE 8080 9102

ENTRYPOINT ["spine"]
CMD ["--help"]
