#!/usr/bin/env bash
# Download, into one folder, the wheels of the runtime packages the lent GPU machine lacks, so
# that `pipeline bench gpu` runs there without network (CPython 3.12, manylinux x86_64).
#
#   docker/gpu_wheels.sh OUT_DIR
#
# Its image already has torch, transformers, numpy, pillow, pyyaml, scikit-image, safetensors,
# huggingface-hub, tqdm, typer (with click, rich, shellingham), packaging, typing-extensions,
# filelock, regex, requests and msgpack. Missing, with the dependencies they pull in:
#   diffusers    (GenPercept's UNet and VAE; its importlib_metadata requirement is only
#                 imported on Python < 3.8, so it is left out)
#   webdataset   + braceexpand
#   zarr 3       + donfig, google-crc32c, numcodecs
#   numcodecs, pcodec
# Versions: the ones this project's pyproject.toml allows and its development environment runs.
# Only one version of each package is kept in OUT_DIR (older downloads of another are removed).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"

pins=(
    diffusers==0.42.1
    webdataset==1.0.2
    braceexpand==0.1.7
    zarr==3.1.6
    donfig==0.8.1.post1
    google-crc32c==1.9.0
    numcodecs==0.16.6
    pcodec==1.1.0
)

for pin in "${pins[@]}"; do
    name=${pin%%==*}
    version=${pin##*==}
    stem=${name//-/_}  # wheel file names spell the project name with underscores
    for old in "$out"/"$stem"-*.whl; do
        [[ -e $old ]] || continue
        [[ $(basename "$old") == "$stem-$version-"* ]] || rm -v -- "$old"
    done
    python3 -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 \
        -d "$out" "$pin"
done

echo "$(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out"
echo "On the GPU machine (from the repository root, with $out copied there as WHEELS):"
echo "  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade" \
    "--target /tmp/site WHEELS/*.whl && export PYTHONPATH=/tmp/site"
echo "  PYTHONPATH=/tmp/site:. python3 -m pipeline.cli bench gpu --out OUT"
