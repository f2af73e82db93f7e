"""Bring your own model (issue 16): the tutorial nbs/tutorials/byo_model.ipynb on a scratch git + DVC project adds a gradient-boosting
forecaster from a user module through `train.candidates`, runs it as a `dvc exp run -S` experiment, compares with `mlops-kit runs compare`,
lets the gate decide, and serves the registered version (its own asserts: the candidate's trials, `code/my_models.py` in the registered
model, an answer from the real scoring server). Here: it ran, and the registered bundle holds the candidate."""
import json, sys
from pathlib import Path

import pytest

from conftest import ENV, GATE, scratch_project

SMALL = {'sample': {'days': 75, 'n_services': 4}}   # (GATE: the first version's recall tolerance, as in test_level1)


@pytest.fixture(scope='module')
def byo(tmp_path_factory):
    import papermill as pm
    root, _ = scratch_project(tmp_path_factory.mktemp('byo'), SMALL | GATE)
    with pytest.MonkeyPatch.context() as mp:     # the kernel's commands use the project's own store: an earlier test in this
        for k, v in ENV.items(): mp.setenv(k, v)  # worker may have set MLFLOW_TRACKING_URI (mlflow.set_tracking_uri does)
        mp.delenv('MLFLOW_TRACKING_URI', raising=False)
        pm.execute_notebook(str(root / 'nbs/tutorials/byo_model.ipynb'), str(root / 'byo.out.ipynb'), parameters={'root': str(root)},
                            kernel_name='python3', progress_bar=False, cwd=str(root / 'nbs/tutorials'))
    return root


def test_tutorial_candidate_is_in_the_registered_bundle(byo):
    root = byo
    import mlflow
    from mlops_kit.tracking import load_bundle, read_run
    reg = json.loads((root / 'metrics/register.json').read_text())
    assert reg['version'] == 2, reg                                       # the baseline, then the experiment
    uri = read_run(root / 'models/run.json')['tracking_uri']              # the project's store (not a variable an earlier test set)
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/mlops_kit_fleet/{reg['version']}", dst_path=str(root / 'dl')))
    assert (local / 'code' / 'my_models.py').exists()                     # the candidate's code travels with the model
    sys.path.insert(0, str(local / 'code'))
    try:
        b = load_bundle(root / 'models')                                   # the experiment's bundle, digest-checked
        kinds = {type(t.detector.forecaster_).__name__ for t in b.tuned.values()}
        names = {c['name'] if isinstance(c, dict) else c for c in b.meta['params']['candidates']}
    finally:
        sys.path.remove(str(local / 'code'))
    assert 'hgb' in names, names
    assert 'LagHGB' in kinds, kinds                                       # it won at least one monitor: in the bundle, served by the tutorial
