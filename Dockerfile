# soundspace: one image for CPU and GPU.
#   CPU:  docker build -t soundspace:cpu .
#   GPU:  docker build --build-arg TORCH=cuda -t soundspace:gpu .
#   with Magenta's model baked in: --build-arg CHECKPOINT=official (downloads ~1 GB at build)
# Wheels in wheels/ are used before the package indexes (offline builds; scripts/docker-wheels).
ARG BASE=debian:bookworm-slim

# --- Python, libsndfile and a virtual environment: the base of every stage -------------------
FROM ${BASE} AS system
ARG DEBIAN_FRONTEND=noninteractive
# Versions pinned to bookworm's series; the wildcard takes Debian's security updates within it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3=3.11.* python3-venv=3.11.* libsndfile1=1.2.* ca-certificates=2023* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin soundspace \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# --- Dependencies, in their own layer before the code, at the versions of docker/constraints.txt
FROM system AS deps
# cpu: torch from PyTorch's CPU index (no CUDA libraries); cuda: PyPI's build, which bundles CUDA.
ARG TORCH=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
# Optional extras of pyproject.toml to add, comma-separated (e.g. EXTRAS=ray for the Ray backend).
ARG EXTRAS=
COPY wheels/ /wheels/
COPY pyproject.toml docker/constraints.txt /build/
WORKDIR /build
RUN set --; case "$TORCH" in \
      cpu) if [ -n "$TORCH_CPU_INDEX" ]; then set -- --extra-index-url "$TORCH_CPU_INDEX"; fi ;; \
      cuda) ;; \
      *) echo "TORCH must be cpu or cuda, got '$TORCH'" >&2; exit 1 ;; \
    esac \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && python3 -c "import os, tomllib; extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(r for e in filter(None, os.environ.get('EXTRAS', '').split(',')) for r in extras[e]))" >> requirements.txt \
 && pip install --find-links /wheels -c constraints.txt "$@" -r requirements.txt

# --- Optional: Magenta's checkpoint, converted here so TensorFlow never reaches the runtime ---
FROM deps AS checkpoint
ARG CHECKPOINT=none
ARG CHECKPOINT_URL=http://download.magenta.tensorflow.org/models/nsynth/wavenet-ckpt.tar
COPY pipeline/ /build/pipeline/
COPY scripts/download-checkpoint /build/scripts/
RUN mkdir -p /checkpoints \
 && if [ "$CHECKPOINT" = official ]; then \
      pip install --find-links /wheels -c constraints.txt tensorflow-cpu \
      && python3 scripts/download-checkpoint --quiet --url "$CHECKPOINT_URL" \
           --out /checkpoints/wavenet --work /tmp/ckpt \
      && rm -rf /tmp/ckpt; \
    elif [ "$CHECKPOINT" != none ]; then \
      echo "CHECKPOINT must be none or official, got '$CHECKPOINT'" >&2; exit 1; \
    fi

# --- The application: the runtime image's content ------------------------------------------
FROM deps AS app
WORKDIR /app
COPY pyproject.toml README.md /app/
COPY pipeline/ /app/pipeline/
RUN pip install --no-deps /app && rm -rf /app/build /app/*.egg-info
COPY config-workflow-local.json config-workflow-paperspace.json config-workflow-ray.json /app/
COPY models/ /app/models/
COPY --from=checkpoint /checkpoints/ /app/models/n-synth/checkpoints/
COPY docker/entrypoint /usr/local/bin/soundspace-entrypoint
RUN mkdir /app/output && chown 1000:1000 /app/output
USER 1000:1000
ENTRYPOINT ["soundspace"]
CMD ["generate", "--workflow", "config-workflow-local.json", "--dataset", "models/n-synth/dataset-test"]

# --- The test suite in the image (docker-compose's `test` service: --target test) ------------
FROM app AS test
USER 0
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/app/pyproject.toml', 'rb'))['project']['optional-dependencies']['test']))" > /build/test-requirements.txt \
 && pip install --find-links /wheels -c /build/constraints.txt -r /build/test-requirements.txt
COPY scripts/ /app/scripts/
COPY tests/ /app/tests/
RUN chown -R 1000:1000 /app/tests
USER 1000:1000
ENTRYPOINT []
CMD ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]

# --- The runtime image, the default target (last stage) --------------------------------------
FROM app AS runtime
# The entry point starts as root only to give the mounted output folder to its user, then runs
# soundspace as that user (docker/entrypoint): ./output works on a fresh clone, for root and for
# an ordinary user, with no variables to set.
# hadolint ignore=DL3002
USER 0
ENTRYPOINT ["soundspace-entrypoint"]
