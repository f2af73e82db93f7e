"""Adversarial inputs, part 4: crashes (issue 15). A stage killed with SIGKILL leaves no worker processes behind (the loky workers and
their resource trackers go with it), and the MLflow run it left RUNNING is ended KILLED, with its nested runs, the next time a stage starts."""
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import psutil
import pytest


def alive(p: psutil.Process) -> bool:
    try: return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess: return False


def wait_for(cond, timeout: float, what: str):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout: raise AssertionError(f'{what} (after {timeout:g} s)')
        time.sleep(0.2)


STAGE = textwrap.dedent("""
    import sys, time
    from mlops_kit.engine import parallel_map
    def slow(x):
        open(f'started-{x}', 'w').close(); time.sleep(120); return x
    if __name__ == '__main__':
        parallel_map(slow, {f'm{i}': i for i in range(4)}, workers=int(sys.argv[1]), progress=False)
""")


@pytest.mark.parametrize('when', ['mid-task'])     # killed while loky is still starting a worker (its first seconds), loky's bootstrap can block: see nbs/15_engine.ipynb
def test_a_killed_stage_leaves_no_worker_processes(tmp_path, when, workers=2):
    "kill -9 of a process in the middle of parallel_map: its loky workers and resource trackers are gone within seconds, not after their tasks."
    (tmp_path / 'stage.py').write_text(STAGE)
    proc = subprocess.Popen([sys.executable, str(tmp_path / 'stage.py'), str(workers)], cwd=tmp_path, start_new_session=True)
    stage = psutil.Process(proc.pid)
    try:
        wait_for(lambda: len(list(tmp_path.glob('started-*'))) >= workers, 90, 'the workers never started their tasks')
        kids = stage.children(recursive=True)
        assert len(kids) >= workers
        os.kill(proc.pid, signal.SIGKILL); proc.wait()
        wait_for(lambda: not any(alive(k) for k in kids), 15, f'orphans left: {[(k.pid, " ".join(k.cmdline())[:80]) for k in kids if alive(k)]}')
    finally:
        with_pg = [k for k in psutil.process_iter() if k.pid != os.getpid() and alive(k) and _in_session(k, proc.pid)]
        for k in with_pg: k.kill()                                         # only what this test started, by its session


def _in_session(p: psutil.Process, sid: int) -> bool:
    try: return os.getsid(p.pid) == sid
    except (ProcessLookupError, PermissionError): return False


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys, mlflow
    from mlops_kit.tracking import _process_tags, experiment
    eid = experiment('crash', sys.argv[1])
    run = mlflow.start_run(experiment_id=eid, tags=_process_tags())       # what the train stage tags its run with (lineage)
    child = mlflow.start_run(run_name='evaluate', nested=True)
    print(run.info.run_id, child.info.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)                                  # killed mid-run: nothing gets to end the runs
""")


def test_a_run_left_running_by_a_killed_stage_ends_killed_on_the_next_start(tmp_path):
    from mlflow.tracking import MlflowClient
    from mlops_kit.tracking import experiment
    uri = f'sqlite:///{tmp_path}/mlflow.db'
    (tmp_path / 'killed.py').write_text(KILLED_RUN)
    p = subprocess.run([sys.executable, str(tmp_path / 'killed.py'), uri], capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    parent, child = p.stdout.split()
    c = MlflowClient(uri)
    assert c.get_run(parent).info.status == c.get_run(child).info.status == 'RUNNING'      # as the issue found it
    experiment('crash', uri)                                                               # the next stage start
    assert c.get_run(parent).info.status == c.get_run(child).info.status == 'KILLED'
    assert 'process that ran it was gone' in c.get_run(parent).data.tags['mlops_kit.ended']
