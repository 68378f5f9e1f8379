"""Processes sharing one study store never take the same queued trial.

Optuna hands out a queued trial by reading it as waiting, then marking it running. SQLite has no
row lock, so without a write lock taken at the start of the transaction two processes could both
read "waiting" and run the same trial (seen as trial 0 run by two Ray workers).
"""

from __future__ import annotations

import multiprocessing as mp
import time

from unlearnkit.bench.tune_store import open_storage, quiet_optuna


def _take(out: str, start: float, results) -> None:
    import optuna

    with quiet_optuna():
        study = optuna.load_study(study_name="s", storage=open_storage(out))
    while time.time() < start:  # every process asks at the same moment
        pass
    results.put(study._pop_waiting_trial_id())


def test_a_queued_trial_goes_to_exactly_one_of_several_processes(tmp_path):
    import optuna

    ctx = mp.get_context("fork")  # the children inherit the imports: quick to start
    for round_ in range(3):
        out = tmp_path / f"r{round_}"
        with quiet_optuna():
            study = optuna.create_study(study_name="s", storage=open_storage(out))
        study.enqueue_trial({})
        results = ctx.Queue()
        start = time.time() + 1.5  # after every process has opened the store
        procs = [ctx.Process(target=_take, args=(str(out), start, results)) for _ in range(5)]
        for p in procs:
            p.start()
        taken = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
        assert sorted(t is not None for t in taken) == [False] * 4 + [True], taken
