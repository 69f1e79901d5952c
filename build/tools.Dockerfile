# The tools image, iris-tools:<version>: what a Cloud Run job runs for `make rollout DETACH=1` (the rollout, with the
# job's service account; no gcloud, no models). Built by build/build_images.sh beside the model images:
#   DOCKER_BUILDKIT=1 docker build -f build/tools.Dockerfile -t iris-tools:0.1.0 .
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
COPY requirements.txt requirements-job.txt /tmp/
# A TLS-intercepting proxy's CA can be handed in as the BuildKit secret `pip_ca`, for this step only, never a layer.
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements-job.txt \
    && /opt/venv/bin/pip uninstall --yes --quiet setuptools pip \
    && find /opt/venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    RUN_DIR=/tmp/run
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml /app/
COPY shared/ /app/shared/
COPY iris_tools/ /app/iris_tools/
RUN python3 -m compileall -q /app
LABEL org.opencontainers.image.title="iris-tools" \
      org.opencontainers.image.description="the rollout as a Cloud Run job (make rollout DETACH=1)"
USER 10001:10001
ENTRYPOINT ["python3", "-m", "iris_tools.rollout"]
CMD ["job"]
