# lpnode-runner: one pipeline and one model behind ai-runner's HTTP API, honouring the ai-runner container
# contract, so go-livepeer (or lpnode's orchestrator) can start it as it starts livepeer/ai-runner:
#   env PIPELINE, MODEL_ID (and optimisation flags such as SFAST), models in MODEL_DIR=/models (mount them),
#   port 8000, GET /health.
# Build from the repository root (docs/docker.md):
#   docker build -f docker/runner.Dockerfile -t lpnode-runner .                                  # CUDA (GPU)
#   docker build -f docker/runner.Dockerfile -t lpnode-runner --build-arg BASE_IMAGE=python:3.11-slim \
#       --build-arg TORCH=torch --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu .   # CPU
# Build arguments:
#   BASE_IMAGE  default a CUDA runtime image; one without Python gets Python from apt (Debian or Ubuntu).
#   TORCH       the PyTorch requirement installed before everything else (default "torch": PyPI's CUDA build).
#               A wheel put in docker/wheels/ is at /wheels: --build-arg PIP_FIND_LINKS=/wheels
#               --build-arg TORCH=torch==2.13.0+cpu installs it without downloading anything for torch.
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CONSTRAINT  pip's own settings, for the build only.
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG TORCH=torch
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CONSTRAINT
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# lpnode goes into its own venv; a base image without Python (the CUDA images) gets one from apt first.
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/lpnode
ENV PATH=/opt/lpnode/bin:$PATH

COPY docker/wheels/ /wheels/
RUN pip install "${TORCH}"
WORKDIR /build
# Dependencies first, from pyproject.toml alone, so that a change to the code rebuilds only the last layer.
COPY pyproject.toml ./
RUN mkdir -p src/lpnode && touch src/lpnode/__init__.py README.md \
 && pip install ".[runner]" && pip uninstall -y -q lpnode && rm -rf src build
COPY README.md ./
COPY src/ src/
RUN pip install --no-deps ".[runner]" && cd / && rm -rf /build /wheels

# The ai-runner contract. HOST is 0.0.0.0 so that the published port reaches the runner; models are never
# downloaded at start (HF_HUB_OFFLINE=1): put them in the models dir first (`lpnode models pull`).
ENV MODEL_DIR=/models HOST=0.0.0.0 PORT=8000 HF_HUB_OFFLINE=1 PIPELINE="" MODEL_ID=""
WORKDIR /models
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=60 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
CMD ["lpnode", "runner"]
