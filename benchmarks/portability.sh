#!/usr/bin/env bash
# Does `python -m brfjax.evaluate` print the same line at every batch size and device
# count? For each checkpoint, evaluates it at the batch sizes in BATCHES (default 1 7 64
# and the command's default) on each device count in DEVICES (default 1 2 3), prints
# every line and, per checkpoint, the number of distinct lines (1 = portable).
#
#   bash benchmarks/portability.sh CHECKPOINTS_DIR MNIST_DIR     # from the repository root
#
# CHECKPOINTS_DIR holds the published models as brfjax .npz files (ecg_*.npz,
# smnist_brf.npz, psmnist_brf.npz and psmnist_brf_permutation.npy); MNIST_DIR the four
# MNIST IDX files. MNIST at batch size 1 takes long on a CPU: set BATCHES to skip it.
set -u
checkpoints=${1:?usage: bash benchmarks/portability.sh CHECKPOINTS_DIR MNIST_DIR}
mnist=${2:?usage: bash benchmarks/portability.sh CHECKPOINTS_DIR MNIST_DIR}
python=${PYTHON:-python3}
read -r -a batches <<< "${BATCHES:-1 7 64 default}"
read -r -a devices <<< "${DEVICES:-1 2 3}"
runs=("ecg brf" "ecg vrf" "ecg alif" "smnist brf" "psmnist brf")
[ -n "${RUNS:-}" ] && IFS=';' read -r -a runs <<< "$RUNS"
for run in "${runs[@]}"; do
    read -r task neuron <<< "$run"
    extra=()
    case $task in
        smnist) extra=(--data-dir "$mnist") ;;
        psmnist) extra=(--data-dir "$mnist" --permutation "$checkpoints/psmnist_${neuron}_permutation.npy") ;;
    esac
    lines=()
    for batch in "${batches[@]}"; do
        for count in "${devices[@]}"; do
            size=()
            [ "$batch" != default ] && size=(--batch-size "$batch")
            line=$("$python" -m brfjax.evaluate --task "$task" --neuron "$neuron" \
                   --checkpoint "$checkpoints/${task}_${neuron}.npz" "${extra[@]}" "${size[@]}" --devices "$count")
            echo "batch $batch, devices $count: $line"
            lines+=("$line")
        done
    done
    distinct=$(printf '%s\n' "${lines[@]}" | sort -u | wc -l)
    echo "$task $neuron: $distinct distinct line(s) over ${#lines[@]} runs"
done
