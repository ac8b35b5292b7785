#!/bin/bash
# SPARO ViT-B/16 on CC3M + CC12M with the authors' recipe (docs/training.md), on SLURM.
#
#   sbatch scripts/train_sparo_slurm.sh                  # 4 nodes x 8 GPUs, global batch 2048
#   sbatch --nodes 1 scripts/train_sparo_slurm.sh        # 1 node x 8 GPUs, same global batch
#
# One task per GPU; open_clip_train reads rank and world size from SLURM's variables.
# Re-submitting the same job resumes from its latest checkpoint (--resume latest).
# Set the variables below (or export them before sbatch) for your cluster.
# Python: the checkout's .venv (made by `make install`), found from the directory sbatch was run
# in (submit from the checkout's root), or any other environment's python given as PYTHON.
#SBATCH --job-name=sparo-vit-b-16
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=8
#SBATCH --wait-all-nodes=1
#SBATCH --exclusive
#SBATCH --time=72:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

REPO=${REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
if [[ ! -x $PYTHON ]]; then
    echo "no Python at $PYTHON: run 'make install' in the checkout and submit from its root," \
        "or set PYTHON=/path/to/env/bin/python (an environment with open_clip_sparo installed)" >&2
    exit 1
fi
if ! "$PYTHON" -c "import importlib.util as u, sys; sys.exit(u.find_spec('training') is None)"; then
    echo "$PYTHON cannot import training.main: install this checkout into it (make install)" >&2
    exit 1
fi
echo "using $PYTHON" >&2

TRAIN_DATA=${TRAIN_DATA:?set TRAIN_DATA, e.g. "/data/cc3m/{00000..00331}.tar::/data/cc12m/{00000..01242}.tar"}
NUM_SAMPLES=${NUM_SAMPLES:?set NUM_SAMPLES to the number of image-text pairs in TRAIN_DATA}
IMAGENET_VAL=${IMAGENET_VAL:-}           # ImageFolder for zero-shot during training (optional)
LOGS=${LOGS:-$PWD/runs}
NAME=${NAME:-sparo-vit-b-16-cc3m-cc12m}
GLOBAL_BATCH=${GLOBAL_BATCH:-2048}
MAX_PARAMS=${MAX_PARAMS:-149620737}      # OpenCLIP ViT-B-16, the baseline

if (( GLOBAL_BATCH % SLURM_NTASKS != 0 )); then
    echo "GLOBAL_BATCH=$GLOBAL_BATCH is not divisible by $SLURM_NTASKS tasks" >&2
    exit 1
fi
ZERO_SHOT=()
if [[ -n $IMAGENET_VAL ]]; then
    ZERO_SHOT=(--imagenet-val "$IMAGENET_VAL" --zeroshot-frequency 1)
fi

MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_ADDR
export MASTER_PORT=${MASTER_PORT:-29500}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

srun --cpu-bind=v --accel-bind=gn "$PYTHON" -u -m training.main -- \
    --model sparo-ViT-B-16 \
    --train-data "$TRAIN_DATA" --train-num-samples "$NUM_SAMPLES" --dataset-type webdataset \
    --batch-size $(( GLOBAL_BATCH / SLURM_NTASKS )) --epochs 25 \
    --lr 5e-4 --beta1 0.9 --beta2 0.98 --eps 1e-6 --wd 0.5 \
    --warmup 3600 --lr-scheduler cosine \
    --precision amp_bfloat16 --local-loss --gather-with-grad --grad-checkpointing \
    --workers "$(( SLURM_CPUS_PER_TASK - 2 ))" --seed 0 \
    "${ZERO_SHOT[@]}" \
    --logs "$LOGS" --name "$NAME" --save-frequency 1 --resume latest \
    --report-to tensorboard \
    --max-params "$MAX_PARAMS" --log-slot-stats 500
