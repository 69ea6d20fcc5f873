"""Uploaded by cloudserve beside the training code: runs the script, reports its objective.

The script prints its metric (``val_auc=0.91``); this wrapper passes the output through and
logs every value matching ``CLOUDSERVE_METRIC_REGEX`` as metric ``CLOUDSERVE_METRIC`` (through
MLflow, which Azure ML jobs are wired to), so the sweep sees it without changes to the script.
Standard library only: where mlflow is not installed the printed line is the only record.
"""

import importlib.util
import os
import re
import subprocess
import sys


def _log(name, value, step):
    # Azure ML sets MLFLOW_TRACKING_URI in every job; elsewhere (a laptop, the fake) the printed
    # line is the record and nothing is written to a local ./mlruns. An environment without
    # mlflow (a user's own training environment) keeps running: the sweep then sees no metric.
    if "MLFLOW_TRACKING_URI" not in os.environ or importlib.util.find_spec("mlflow") is None:
        return
    import mlflow

    mlflow.log_metric(name, value, step=step)


def main():
    name = os.environ["CLOUDSERVE_METRIC"]
    pattern = re.compile(os.environ["CLOUDSERVE_METRIC_REGEX"])
    args = sys.argv[1:]
    argv = [sys.executable, *args] if args[0].endswith(".py") else args
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    step = 0
    for line in proc.stdout:
        sys.stdout.write(line)
        match = pattern.search(line)
        if match:
            _log(name, float(match.group(1)), step)
            step += 1
    sys.exit(proc.wait())


if __name__ == "__main__":
    main()
