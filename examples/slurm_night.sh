#!/usr/bin/env bash
# A night split over a Slurm job array, without Python: array task I of N runs
# `clred run --shard I/N` on its own node or GPU and takes the independent
# groups g % N == I - 1 (the master bias, a dark per exposure time, a flat per
# filter, a stack per object and filter), building in memory the masters its
# groups need but another shard writes. Products are written atomically
# beside a per-shard manifest, so a task that is requeued (node failure,
# preemption) finishes only what is missing and leaves no partial file.
#
#   sbatch --array=1-8 examples/slurm_night.sh /data/night /data/reduced
#
#SBATCH --job-name=clred-night
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --output=clred-night-%A_%a.log
set -euo pipefail
RAW=${1:?usage: sbatch --array=1-N slurm_night.sh RAW_DIR OUT_DIR [clred run options...]}
OUT=${2:?usage: sbatch --array=1-N slurm_night.sh RAW_DIR OUT_DIR [clred run options...]}
shift 2
: "${SLURM_ARRAY_TASK_ID:?run as a job array: sbatch --array=1-N}"
: "${SLURM_ARRAY_TASK_COUNT:?run as a job array: sbatch --array=1-N}"
# Slurm gives the task its GPU through CUDA/ROCR_VISIBLE_DEVICES; clred opens the first GPU it
# sees unless CLRED_DEVICE names another.
exec clred run --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" "$RAW" -o "$OUT" --json "$@"
