#!/usr/bin/env bash
# Build soundspace's CPU and GPU images and push them to a registry.
#
#   SOUNDSPACE_REGISTRY=registry.example.com/team models/n-synth/deploy-docker.sh [--dry-run]
#
# Tags: $SOUNDSPACE_REGISTRY/soundspace:<version>-cpu and -gpu, plus :cpu and :gpu (the version
# is pyproject.toml's). SOUNDSPACE_CHECKPOINT=official bakes Magenta's model into both (a 1 GB
# download at build time; Paperspace jobs can then run without /storage). --dry-run prints the
# commands instead of running them. Log in first (docker login REGISTRY).
set -euo pipefail
cd "$(dirname "$0")/../.."
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deploy-docker.sh: unknown argument '$arg' (use --dry-run)" >&2; exit 2 ;;
    esac
done
registry=${SOUNDSPACE_REGISTRY:-}
if [ -z "$registry" ]; then
    echo "deploy-docker.sh: set SOUNDSPACE_REGISTRY to the registry (and namespace) to push to," \
         "e.g. SOUNDSPACE_REGISTRY=ghcr.io/you" >&2
    exit 2
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
checkpoint=${SOUNDSPACE_CHECKPOINT:-none}

run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$dry_run" -eq 0 ]; then "$@"; fi
}

for variant in cpu gpu; do
    torch=$([ "$variant" = gpu ] && echo cuda || echo cpu)
    image="$registry/soundspace"
    run docker build --network host --build-arg TORCH="$torch" --build-arg CHECKPOINT="$checkpoint" \
        ${TORCH_CPU_INDEX+--build-arg TORCH_CPU_INDEX="$TORCH_CPU_INDEX"} \
        --target runtime -t "$image:$version-$variant" -t "$image:$variant" .
    run docker push "$image:$version-$variant"
    run docker push "$image:$variant"
done
