"""Ray's own cost of one merge round of `rnnlm train --workers 2` on PTB (hidden 100, 100 classes,
--sync-words 2048), without the training: 2 local actors each return 1.05 M float32 weights (and
their block ids) and receive the 1.14 M merged ones through the object store, as
rnnlm.training.distributed does; and the same round trip with a tiny payload. docs/distributed.md.
Usage: python scripts/ray_roundtrip.py [--rounds 40]"""
import argparse
import logging
import os
import time

import numpy as np

SENT, MERGED, BLOCK = 1_047_700, 1_141_500, 100   # weights a worker sends / gets back per round (PTB)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    os.environ.setdefault("RAY_worker_niceness", "0")   # as rnnlm.training.distributed starts its local Ray
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self, n):
            self.out = (np.arange(n // BLOCK, dtype=np.int64), np.ones(n, np.float32))

        def round(self, update):
            if update is not None:
                update[1].sum()   # read what came in
            return self.out

    try:
        for label, sent, merged in (("tiny payload", 100, 100), ("PTB-sized payload", SENT, MERGED)):
            workers = [Worker.remote(sent) for _ in range(2)]
            ray.get([w.round.remote(None) for w in workers])
            update = ray.put((np.arange(merged // BLOCK, dtype=np.int64), np.ones(merged, np.float32)))
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                res = ray.get([w.round.remote(update) for w in workers])
                update = ray.put((res[0][0], np.concatenate([r[1] for r in res])[:merged]))
                times.append(time.perf_counter() - t0)
            print(f"{label}: {sent:,} weights back from each worker, {merged:,} out: median "
                  f"{1e3 * np.median(times):.1f} ms, min {1e3 * min(times):.1f} ms a round")
            for w in workers:
                ray.kill(w)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
