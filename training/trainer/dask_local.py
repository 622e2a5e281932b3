"""A local Dask cluster for trying `--dask` on one machine (and for the tests):

    .venv/bin/python -m training.trainer.dask_local [--workers 2] [--threads 1]

starts `distributed.LocalCluster` (worker processes, no dashboard), prints the scheduler address on
stdout (one line) and runs until stdin closes or SIGTERM/SIGINT, then shuts the cluster down.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m training.trainer.dask_local")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--memory-limit", default="1GiB", help="per worker (Dask's memory_limit)")
    args = p.parse_args(argv)

    from distributed import LocalCluster

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.threads,
        processes=True,
        dashboard_address=None,
        memory_limit=args.memory_limit,
        host="127.0.0.1",
    )
    try:
        print(cluster.scheduler_address, flush=True)
        # stdin closing (the parent went away) stops the cluster too
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
