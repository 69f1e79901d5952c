#!/usr/bin/env bash
# Build one image per model version from build/Dockerfile: ${IMAGE}:<name> for every functions/<name>/main.py;
# then the tools image ${IMAGE}-tools:<version> from build/tools.Dockerfile (the rollout job, make rollout DETACH=1).
# Used by `make images` and by cloudbuild.yaml, so both build the same way.
#   IMAGE       image name without tag            (default iris)
#   BASE_IMAGE  base with python3 and venv         (default python:3.11-slim)
#   PIP_CA      CA bundle handed to pip as the BuildKit secret pip_ca (optional)
#   DOCKER      docker CLI that can build with BuildKit (default docker)
#   COMMIT      also tag each image ${IMAGE}:<name>-${COMMIT} (Cloud Build: $SHORT_SHA)
#   PUSH=1      push each image (and its commit tag) after building it
#   TOOLS=0     build the model images only, not ${IMAGE}-tools
set -euo pipefail
cd "$(dirname "$0")/.."
docker=${DOCKER:-docker}
image=${IMAGE:-iris}
base=${BASE_IMAGE:-python:3.11-slim}
secret=()
if [ -n "${PIP_CA:-}" ]; then secret=(--secret "id=pip_ca,src=${PIP_CA}"); fi
models=()
for main in functions/*/main.py; do models+=("$(basename "$(dirname "$main")")"); done
[ ${#models[@]} -gt 0 ] || { echo "no model versions under functions/" >&2; exit 1; }
if ! "$docker" image inspect "$base" >/dev/null 2>&1 && ! "$docker" pull --quiet "$base" >/dev/null 2>&1; then
  echo "cannot get the base image ${base}: it is not here and cannot be pulled (no registry?)." >&2
  echo "Build one from Debian's packages instead: make base-image, then BASE_IMAGE=iris-base:bookworm" >&2
  exit 1
fi
for model in "${models[@]}"; do
  echo "building ${image}:${model} (BASE_IMAGE=${base})"
  DOCKER_BUILDKIT=1 "$docker" build --quiet -f build/Dockerfile --build-arg "BASE_IMAGE=${base}" \
    --build-arg "MODEL=${model}" "${secret[@]}" -t "${image}:${model}" .
  tags=("${image}:${model}")
  if [ -n "${COMMIT:-}" ]; then
    "$docker" tag "${image}:${model}" "${image}:${model}-${COMMIT}"
    tags+=("${image}:${model}-${COMMIT}")
  fi
  if [ "${PUSH:-0}" = 1 ]; then for tag in "${tags[@]}"; do "$docker" push "$tag"; done; fi
done
[ "${TOOLS:-1}" = 1 ] || exit 0
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
tools="${image}-tools:${version}"
echo "building ${tools} (BASE_IMAGE=${base})"
DOCKER_BUILDKIT=1 "$docker" build --quiet -f build/tools.Dockerfile --build-arg "BASE_IMAGE=${base}" "${secret[@]}" \
  -t "${tools}" .
tags=("${tools}")
if [ -n "${COMMIT:-}" ]; then
  "$docker" tag "${tools}" "${tools}-${COMMIT}"
  tags+=("${tools}-${COMMIT}")
fi
if [ "${PUSH:-0}" = 1 ]; then for tag in "${tags[@]}"; do "$docker" push "$tag"; done; fi
