"""The ranker's trainer: a LambdaRank model (LightGBM) on the rows the TypeScript row builder
writes, tuned with Optuna, exported to ONNX and checked against LightGBM before anything is
written.

    .venv/bin/python -m training.trainer --rows train.arrow --valid valid.arrow --out DIR \
        [--trials 10] [--seed 42] [--version NAME] [--num-boost-round 500] [--early-stopping 30] \
        [--min-rounds N] [--large-from N] [--negatives SHARE] [--sized-features F,F] \
        [--large-trees LEAVES,ROWS] \
        [--refit [--no-search] [--blend W] [--refit-with later.arrow ...]
            [--fit-weeks N] [--rolling MS,MS [--history older.arrow ...] [--fit-cache DIR]]] \
        [--dask tcp://scheduler:8786 [--dask-partitions N]]

    .venv/bin/python -m training.trainer --check-parity DIR/model.onnx --meta DIR/model.json \
        --valid valid.arrow [--booster DIR/model.lgb.txt]

Run from the repository root (training/fit.ts spawns it so). One run, in the order of the modules
that do each step:

  data.py      read and check the rows files (Arrow IPC), drop training queries without a purchase;
               from --large-from of them on (cli.py `large_data`), thin the other candidates of
               every training set (--negatives); below, leave out the --sized-features
  search.py    the Optuna search: one LightGBM booster per trial, best validation MAP@12 first
               (--no-search: none, the first trial's parameters go straight to the refit)
  distributed.py  --dask: the same trainings with lightgbm.dask on a Dask cluster
  metrics.py   MAP@12 exactly as the TypeScript evaluation computes it
  refit.py     the chosen params retrained on later weeks (--refit), rolling scores (--rolling)
  blend.py     --blend: a binary model trained beside each of those fits, one model of both
  export.py    the ONNX export, every split aligned with LightGBM's branch
  parity.py    ONNX Runtime's scores against LightGBM's; a model that differs is never shipped
  tracking.py  optional MLflow tracking (MLFLOW_TRACKING_URI)
  output.py    model.json and the files written to --out
  cli.py       the flags, the steps above in order, the one JSON summary line on stdout
  common.py    K, TrainError and the exit codes, the log to stderr

Output in --out: model.onnx, model.lgb.txt (the booster, best iteration only), model.json (read by
models/model-meta.ts), rolling_scores.f32 with --rolling; one JSON summary line on stdout.
Progress goes to stderr, one line per Optuna trial.

Exit codes: 0 ok, 1 bad input / too little data, 2 bad arguments, 3 parity check failed.

Tests: training/trainer/test_*.py (`.venv/bin/python -m pytest training -q`), with the rows files
of testdata.py.
"""

import os

# LightGBM's OpenMP threads sleep instead of spinning while they wait: on a 2-core machine
# shared with other work, spinning made a 10-trial search 5-8x slower (81 s vs 10 s measured).
# Must be set before lightgbm (libgomp) is loaded; an explicit setting wins. Set here, in the
# package, so that it comes before any of its modules is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
