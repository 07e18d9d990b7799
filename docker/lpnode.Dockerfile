# lpnode, the core roles: gateway, orchestrator (with external-URL and Docker runners), remote AI worker,
# BYOC, trickle, payments, signer, dashboards. The model stack is in docker/runner.Dockerfile.
# Build from the repository root (docs/docker.md):
#   docker build -f docker/lpnode.Dockerfile -t lpnode .
#   docker run --rm lpnode gateway --help
# Build arguments: BASE_IMAGE (any image with Python 3.11 or newer and pip; default python:3.11-slim), and pip's
# own settings PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS and PIP_CONSTRAINT, used during the build only
# (wheels put in docker/wheels/ are at /wheels: --build-arg PIP_FIND_LINKS=/wheels).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CONSTRAINT
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY docker/wheels/ /wheels/
WORKDIR /build
# Dependencies first, from pyproject.toml alone, so that a change to the code rebuilds only the last layer.
COPY pyproject.toml ./
RUN mkdir -p src/lpnode && touch src/lpnode/__init__.py README.md \
 && pip install . && pip uninstall -y -q lpnode && rm -rf src build
COPY README.md ./
COPY src/ src/
RUN pip install --no-deps . && cd / && rm -rf /build /wheels

WORKDIR /data
EXPOSE 8935 9935
ENTRYPOINT ["lpnode"]
CMD ["--help"]
