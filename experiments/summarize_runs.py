"""Summarise brfjax training runs: one row per workdir, then mean ± std per task x neuron.

    python experiments/summarize_runs.py runs/ecg_brf_seed* runs/ecg_vrf_seed*

Reads each workdir's ``results.json`` (test statistics of the selected checkpoint) and
``config.json``; the std is the sample standard deviation over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict


def load_run(workdir: str) -> dict:
    with open(os.path.join(workdir, "results.json")) as handle:
        results = json.load(handle)
    with open(os.path.join(workdir, "config.json")) as handle:
        config = json.load(handle)
    return {**results, "seed": config["seed"], "workdir": workdir}


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def summary(runs: list[dict]) -> str:
    lines = [
        "| task | neuron | seed | test acc. (%) | SOP | firing rate | best epoch | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(runs, key=lambda r: (r["task"], r["neuron"], r["seed"])):
        lines.append(
            f"| {run['task']} | {run['neuron']} | {run['seed']} | {run['accuracy']:.2f} | {run['sop']:.1f} | "
            f"{run['firing_rate']:.3f} | {run['best_epoch']} | {run['train_seconds']:.0f} |"
        )
    groups = defaultdict(list)
    for run in runs:
        groups[(run["task"], run["neuron"])].append(run)
    lines += [
        "",
        "| task | neuron | runs | test acc. (%) | SOP | firing rate | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, neuron), group in sorted(groups.items()):
        lines.append(
            f"| {task} | {neuron} | {len(group)} | {mean_std([r['accuracy'] for r in group])} | "
            f"{mean_std([r['sop'] for r in group])} | {mean_std([r['firing_rate'] for r in group])} | "
            f"{mean_std([r['train_seconds'] for r in group])} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+")
    args = parser.parse_args(argv)
    missing = [w for w in args.workdirs if not os.path.exists(os.path.join(w, "results.json"))]
    if missing:
        print(f"error: no results.json (unfinished run?) in {missing}", file=sys.stderr)
        return 1
    print(summary([load_run(w) for w in args.workdirs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
