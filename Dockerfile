# syntax=docker/dockerfile:1.7
# The Inori integrations operator. Build: docker build -t inori-operator:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: a virtual environment with the locked dependencies and the operator ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/inori
COPY pyproject.toml requirements.lock README.md ./
COPY operator ./operator
RUN /opt/inori/bin/pip install --no-cache-dir --constraint requirements.lock . \
 && find /opt/inori -name '__pycache__' -prune -exec rm -rf {} +

# --- runtime: the venv only; no compilers, no pip cache, no source tree ----------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="inori-operator" \
      org.opencontainers.image.description="Kubernetes operator for Inori webhooks and API keys" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.vendor="Inori" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/inori/inori-operator"
ENV PATH=/opt/inori/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/inori /opt/inori
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["inori-operator"]
CMD ["run"]
