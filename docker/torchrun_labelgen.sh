#!/bin/bash
# Label a prepared dataset with every GPU of one node (or several: add --nnodes/--rdzv-*).
# RANK / WORLD_SIZE / LOCAL_RANK from torchrun decide each process's shards and GPU.
#
#   docker/torchrun_labelgen.sh /datasets/sa1b-50k configs/teachers/paper.yaml
set -euo pipefail
DATASET=${1:?usage: $0 DATASET TEACHERS_YAML [labelgen run flags...]}
TEACHERS=${2:?usage: $0 DATASET TEACHERS_YAML [labelgen run flags...]}
shift 2
NPROC=${NPROC:-$(nvidia-smi -L | wc -l)}
torchrun --standalone --nproc-per-node "$NPROC" --no-python \
    labelgen run --dataset "$DATASET" --teachers-file "$TEACHERS" "$@"
