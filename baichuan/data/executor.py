"""Run independent tasks in one process, a local process pool, or on Ray; same results either way.

Tasks are top-level functions of picklable arguments that write their own outputs and completion
markers, so any executor can run them and a rerun skips what is done. Ray is the engine for runs
across machines: `ray start --head` on one node, `ray start --address=HEAD:6379` on the others,
then `RAY_ADDRESS=auto baichuan data run ... --executor ray`; without RAY_ADDRESS a local Ray
instance with `workers` CPUs is started (that is what the tests do).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

from tqdm import tqdm

from baichuan.errors import BaichuanError

EXECUTORS = ("local", "pool", "ray")


def run_tasks(fn: Callable, tasks: Sequence[tuple], executor: str = "local", workers: int = 1,
              desc: str = "tasks", progress: bool = True) -> list[Any]:
    """fn(*task) for every task; results in task order. A failing task raises after the others finish."""
    if executor not in EXECUTORS:
        raise BaichuanError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    bar = tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress, leave=False)
    results: list[Any] = [None] * len(tasks)
    try:
        if executor == "local" or (executor == "pool" and (workers <= 1 or len(tasks) <= 1)):
            for i, task in enumerate(tasks):
                results[i] = fn(*task)
                bar.update()
        elif executor == "pool":
            # spawn, not fork: workers must not inherit the parent's threads (torch, tokenizers)
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
        else:
            results = _run_ray(fn, tasks, workers, bar)
    finally:
        bar.close()
    return results


def _run_ray(fn, tasks, workers, bar):
    try:
        import ray
    except ImportError:
        raise BaichuanError("executor 'ray' needs Ray: pip install 'ray[data]'") from None
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(fn)
    refs = {remote.remote(*task): i for i, task in enumerate(tasks)}
    results = [None] * len(tasks)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            results[refs[ref]] = ray.get(ref)
            bar.update()
    return results
