"""The level-1 pipeline end to end on a scratch git + DVC project (the tests share it; a test that changes it restores the committed
params, dvc.lock, metrics and outputs when it ends, so none depends on another's order): dvc repro through train and evaluate (papermill),
MLflow lineage on the real run, no-op re-runs, param changes re-running only their readers, failing stages, the tutorials (level 0 -> 1,
bring your own model). A deliberately worse train param that registers but is not promoted: tests/test_own_data.py (same gate, one pipeline
run fewer)."""
import json, sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import mlops_kit
from mlops_kit.config import EvaluateParams, TrainParams

from conftest import ENV, GATE, ROOT, SERIAL, ran, scratch_project, set_params, sh

SMALL = {'sample': {'days': 75, 'n_services': 5}}



@pytest.fixture(scope='module')
def proj(tmp_path_factory):
    "A scratch copy of the project (small sample), committed, after one full `dvc repro`."
    root, out = scratch_project(tmp_path_factory.mktemp('level1'), SMALL | GATE | SERIAL, repro=True)
    c, r = mlflow_run(root)
    FIRST['run'] = c.get_run(r['run_id'])          # as the first repro left it: later evaluate runs (tests that change params) log onto it
    FIRST['sha'] = sh('git rev-parse HEAD~1', root).stdout.strip()      # the commit dvc repro ran on (the tutorials commit more later)
    return root, out


FIRST = {}


@pytest.fixture
def changes(proj):
    "The shared project for a test that changes it; afterwards its committed state (params, dvc.lock, metrics, outputs) is back."
    root, _ = proj
    yield root
    sh('git checkout -- . && dvc checkout --force --quiet', root)
    assert 'up to date' in sh('dvc status', root).stdout


def mlflow_run(root):
    from mlops_kit.tracking import client
    r = json.loads((root / 'models/run.json').read_text())
    return client(r['tracking_uri']), r


def test_repro_runs_every_stage_and_prints_fleet_summary(proj):
    root, out = proj
    assert ran(out) == {'sample', 'ingest', 'validate', 'windows', 'train', 'evaluate', 'register', 'monitor'}, out[-3000:]
    m = json.loads((root / 'metrics/evaluate.json').read_text())
    assert f"{m['monitors']} monitors · static {m['static_alerts']} alerts → {m['alerts']}" in out
    assert m['monitors'] == 6 and m['static_alerts'] >= m['alerts'] >= 0 and 0 <= m['recall'] <= 1
    assert m['alerts_in_maintenance'] == 0 and m['feedback_precision'] is None   # the sample's calendar: no alert inside maintenance; no feedback yet
    for f in ('models/bundle.pkl', 'models/trials.parquet', 'reports/train/train.ipynb', 'reports/evaluate/evaluate.ipynb',
              'reports/evaluate/monitors.csv', 'reports/evaluate/alerts_per_day.png', 'metrics/train.json'):
        assert (root / f).stat().st_size > 0, f
    assert len(list((root / 'reports/train/monitors').glob('*.png'))) == 6
    reg = json.loads((root / 'metrics/register.json').read_text())                 # the first version passes the gate and becomes champion
    assert (reg['version'], reg['promoted'], reg['champion']) == (1, True, 1), reg
    assert 'Gate verdict: PASSED' in (root / 'reports/register/model_card.md').read_text()
    assert sh('mlops-kit audit verify', root).stdout.strip().endswith('chain intact')
    mon = json.loads((root / 'metrics/monitor.json').read_text())                   # the monitor stage judged every monitor on the holdout days
    assert (mon['monitors'], mon['judged']) == (6, 6) and mon['as_of'] == json.loads((root / 'metrics/windows.json').read_text())['as_of'], mon
    assert f"{mon['drifted']} of 6 monitors drifted" in out and (root / 'reports/monitor/drift.png').stat().st_size > 0
    assert not (root / '.staging').exists() or not any((root / '.staging').iterdir())


def test_no_pii_in_models_reports_mlflow_or_audit(proj):
    "Nothing the level-1 stages wrote (bundle, reports, metrics, MLflow store and artifacts, audit log) carries a PII column name or value."
    import ahocorasick      # one pass over each file for all 15,000 values (a substring test per value took 22 s)
    root, _ = proj
    raw = yaml.safe_load((root / 'params.yaml').read_text())
    pii = raw['ingest']['pii_columns']
    df = pd.read_parquet(root / raw['sample']['out_dir'] / 'requests.parquet', columns=pii)
    values = set().union(*(set(df[c].astype(str).unique()) for c in pii))
    assert len(values) > 100
    files = [f for d in ('models', 'reports', 'metrics', 'mlartifacts', 'audit') for f in (root / d).rglob('*') if f.is_file()] + [root / 'mlflow.db']
    assert len(files) > 50 and any(f.name == 'bundle.pkl' for f in files) and any(f.suffix == '.ipynb' for f in files)
    found = ahocorasick.Automaton()
    for v in values: found.add_word(v, v)
    found.make_automaton()
    assert [v for _, v in found.iter(f'x{min(values)}y')] == [min(values)]      # the scan finds a value glued inside other text
    for f in files:
        if f.suffix == '.png' or '/code/mlops_kit/' in str(f): continue       # images; the kit's own source inside the logged model
        text = f.read_bytes().decode('utf-8', errors='ignore')
        if f.suffix != '.db': assert not [c for c in pii if c in text], f   # MLflow's own schema has a runs.user_id column
        assert not [v for _, v in found.iter(text)], f


def test_lineage_on_the_real_mlflow_run(proj):
    root, _ = proj
    c, r = mlflow_run(root)
    run = FIRST['run']; tags = run.data.tags
    assert run.info.run_id == r['run_id']
    man = json.loads((root / 'data/windows/manifest.json').read_text())
    lock = yaml.safe_load((root / 'dvc.lock').read_text())['stages']['windows']['outs'][0]
    assert r['tracking_uri'] == f"sqlite:///{root.resolve()}/mlflow.db"
    assert run.info.status == 'FINISHED'
    assert tags['git_sha'] == FIRST['sha']                                          # the commit dvc repro ran on
    assert tags['git_dirty'] == 'false'
    assert tags['mlops_kit_version'] == mlops_kit.__version__
    assert (tags['window_as_of'], tags['window_start'], tags['window_end']) == (man['as_of'], man['window_start'], man['window_end'])
    assert tags['digest_train'] == man['digests']['train.parquet'] and tags['digest_holdout'] == man['digests']['holdout.parquet']
    assert tags[f"dvc_md5 {lock['path']}"] == lock['md5']
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {'windows/train', 'windows/holdout'}
    assert inputs['windows/train'].dataset.digest == man['digests']['train.parquet'][:32]
    itags = {t.key: t.value for t in inputs['windows/train'].tags}
    assert itags['mlflow.data.context'] == 'training' and itags['dvc_md5'] == lock['md5'] and itags['sha256'] == man['digests']['train.parquet']
    p = run.data.params
    assert p['train.alert_budget'] == str(TrainParams().alert_budget) and p['windows.as_of'] == man['as_of'] and tags['evaluate.static_k'] == '3.0'
    assert p['tracking.experiment'] == r['experiment'] == 'mlops_kit' and 'train.experiment' not in p and 'train.tracking_uri' not in p
    assert p['train.zeros'] == 'auto'                                               # params.yaml's reading of zeros reached the run
    ev = json.loads((root / 'metrics/evaluate.json').read_text())
    assert run.data.metrics['eval.alerts_per_day'] == pytest.approx(ev['alerts_per_day'])
    arts = {a.path for a in c.list_artifacts(r['run_id'])} | {a.path for a in c.list_artifacts(r['run_id'], 'notebooks')}
    assert {'notebooks/train.ipynb', 'notebooks/evaluate.ipynb', 'train', 'evaluate'} <= arts


def test_bundle_is_a_pyfunc_with_signature_that_serves_the_fleet(proj):
    import mlflow
    root, _ = proj
    c, r = mlflow_run(root)
    mlflow.set_tracking_uri(r['tracking_uri'])
    models = mlflow.search_logged_models(experiment_ids=[c.get_run(r['run_id']).info.experiment_id], output_format='list')
    m = [x for x in models if x.source_run_id == r['run_id']][0]
    model = mlflow.pyfunc.load_model(m.model_uri)
    assert [i.name for i in model.metadata.get_input_schema().inputs] == ['monitor_id', 'ts', 'value']
    hold = pd.read_parquet(root / 'data/windows/holdout.parquet')
    req = hold[hold.ts < hold.ts.min() + pd.Timedelta('1D')].dropna().assign(ts=lambda d: d.ts.dt.tz_localize(None))
    out = model.predict(req)
    assert len(out) == len(req) and {'expected', 'lower', 'upper', 'score', 'unusual', 'alert'} <= set(out.columns)
    assert out.score.between(0, 1).all() and out.monitor_id.nunique() == hold.monitor_id.nunique()


def test_parameters_cells_are_bound_to_params_sections():
    "Each pipeline notebook's parameters cell holds exactly its params.yaml sections' keys (a second section's prefixed with its name), with the same defaults."
    import nbformat
    from papermill.inspection import inspect_notebook
    from mlops_kit.config import EngineParams, TrackingParams
    train = ((TrainParams, ''), (TrackingParams, 'tracking_'))        # mlops-kit train passes the tracking section as tracking_<key>
    for nb, sections, extra in (('train', train, {'root', 'out', 'windows_dir', 'scheduler', 'feedback'}),
                                ('evaluate', ((EvaluateParams, ''),), {'root', 'out', 'windows_dir', 'models_dir', 'scheduler'})):
        params = inspect_notebook(str(ROOT / 'nbs/pipeline' / f'{nb}.ipynb'))
        assert set(params) == {pre + k for model, pre in sections for k in model.model_fields} | extra, nb
        for model, pre in sections:
            for k, v in model().model_dump().items():
                assert eval(params[pre + k]['default']) == v, (nb, pre + k)
        assert eval(params['scheduler']['default']) == EngineParams().scheduler, nb     # engine.scheduler, passed in by the CLI


def test_repro_again_is_a_noop(proj):
    root, _ = proj
    p = sh('dvc repro', root)
    assert ran(p.stdout) == set() and 'up to date' in p.stdout


def test_tutorial_and_comparable_experiments(changes, monkeypatch):
    "The level 0 -> 1 tutorial runs (it does a `dvc exp run -S train.alert_budget=1.0`); the variant is its own MLflow run, and runs compare shows the change."
    import papermill as pm
    from mlops_kit import cli
    root = changes
    c, r = mlflow_run(root)
    before = {x.info.run_id for x in c.search_runs([c.get_run(r['run_id']).info.experiment_id])}
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)   # the kernel's commands use the project's store (mlflow.set_tracking_uri in earlier tests sets it)
    pm.execute_notebook(str(root / 'nbs/tutorials/level0_to_level1.ipynb'), str(root / 'tutorial.out.ipynb'), parameters={'root': str(root)},
                        kernel_name='python3', progress_bar=False, cwd=str(root / 'nbs/tutorials'))
    runs = c.search_runs([c.get_run(r['run_id']).info.experiment_id], order_by=['attributes.start_time DESC'])
    new = [x for x in runs if x.info.run_id not in before]
    assert len(new) == 1 and new[0].data.params['train.alert_budget'] == '1.0' and new[0].data.tags['dvc_exp_name']
    t = cli.runs('compare', root=root, run_ids=[r['run_id'], new[0].info.run_id])
    row = t[t.key == 'train.alert_budget'].iloc[0]
    assert (row.iloc[2], row.iloc[3]) == ('2.0', '1.0')
    assert 'eval.alerts_per_day' in set(t.key)


def test_byo_tutorial_candidate_is_in_the_registered_bundle(changes):
    """Bring your own model (issue 16): the tutorial nbs/tutorials/byo_model.ipynb adds a gradient-boosting forecaster from a user module
    through `train.candidates`, runs it as a `dvc exp run -S` experiment, compares with `mlops-kit runs compare`, lets the gate decide and
    serves the registered version (its own asserts: the candidate's trials, `code/my_models.py` in the registered model, an answer from
    the real scoring server). Its first step, `dvc repro`, finds this project's baseline up to date, as after the README's quick start.
    Here: it ran, and the registered bundle holds the candidate."""
    import mlflow, papermill as pm
    from mlops_kit.tracking import load_bundle, read_run
    root = changes
    before = json.loads((root / 'metrics/register.json').read_text())['version']
    with pytest.MonkeyPatch.context() as mp:     # the kernel's commands use the project's own store: an earlier test in this
        for k, v in ENV.items(): mp.setenv(k, v)  # worker may have set MLFLOW_TRACKING_URI (mlflow.set_tracking_uri does)
        mp.delenv('MLFLOW_TRACKING_URI', raising=False)
        pm.execute_notebook(str(root / 'nbs/tutorials/byo_model.ipynb'), str(root / 'byo.out.ipynb'), parameters={'root': str(root)},
                            kernel_name='python3', progress_bar=False, cwd=str(root / 'nbs/tutorials'))
    reg = json.loads((root / 'metrics/register.json').read_text())
    assert reg['version'] > before, reg                                   # the experiment registered a new version
    uri = read_run(root / 'models/run.json')['tracking_uri']              # the project's store (not a variable an earlier test set)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/mlops_kit_fleet/{reg['version']}", dst_path=str(root / 'dl'),
                                                     tracking_uri=uri, registry_uri=uri))   # not mlflow.set_tracking_uri: it sets the
                                                                                             # worker's environment for later tests
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


def test_param_change_reruns_only_the_stages_that_read_it(changes):
    """A gate param re-runs register (it reads the `register` section) and monitor (it reads register's verdict), nothing before them.
    (A train param re-running train and every stage after it: tests/test_own_data.py and the level 0 -> 1 tutorial's experiment.)"""
    root = changes
    set_params(root, register={'gate': GATE['register']['gate'] | {'max_fallback_share': 0.25}})
    st = sh('dvc status --json', root).stdout
    assert set(json.loads(st)) == {'register'}, st
    p = sh('dvc repro', root)
    assert ran(p.stdout) == {'register', 'monitor'}, p.stdout


def test_failing_stage_exits_nonzero_shows_the_cell_error_and_publishes_nothing(changes):
    root = changes
    set_params(root, evaluate={'labels': 'data/sample/no-such-labels.csv'})
    p = sh('dvc repro evaluate', root, ok=False)
    assert p.returncode != 0
    err = p.stdout + p.stderr
    assert 'nbs/pipeline/evaluate.ipynb failed in cell' in err and 'FileNotFoundError' in err and 'no-such-labels.csv' in err, err[-3000:]
    assert (root / 'reports/failed/evaluate.ipynb').exists()
    assert not (root / 'metrics/evaluate.json').exists() and not (root / 'reports/evaluate').exists()
    assert 'evaluate' in json.loads(sh('dvc status --json', root).stdout)      # DVC does not record the failed stage as done
    set_params(root, evaluate={'labels': EvaluateParams().labels})


def test_pipeline_notebooks_run_by_hand_with_their_defaults(changes):
    "Opened in JupyterLab (here: executed with no parameters, from nbs/pipeline/), both notebooks run with the defaults and write in place."
    import papermill as pm
    root = changes
    before = (root / 'models/run.json').read_text()
    for nb in ('train', 'evaluate'):
        pm.execute_notebook(str(root / f'nbs/pipeline/{nb}.ipynb'), str(root / f'{nb}.byhand.ipynb'), kernel_name='python3',
                            progress_bar=False, cwd=str(root / 'nbs/pipeline'))
    assert (root / 'models/run.json').read_text() != before            # a new MLflow run, written in place
    assert json.loads((root / 'metrics/evaluate.json').read_text())['monitors'] == 6


def test_run_notebook_publishes_only_after_the_last_cell(tmp_path):
    "A notebook that writes an output and then fails leaves no output behind, only reports/failed/."
    import nbformat
    from mlops_kit.pipeline import StageError, run_notebook
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}})
    nb.cells = [nbformat.v4.new_code_cell("root = '.'\nout = None", metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell("from pathlib import Path\n(Path(out) / 'metrics').mkdir()\n(Path(out) / 'metrics/x.json').write_text('{}')"),
                nbformat.v4.new_code_cell("raise ValueError('boom in cell 3')")]
    (tmp_path / 'nbs/pipeline').mkdir(parents=True); nbformat.write(nb, tmp_path / 'nbs/pipeline/demo.ipynb')
    with pytest.raises(StageError, match=r'failed in cell \[\d+\] with ValueError: boom in cell 3'):
        run_notebook('demo', tmp_path, outputs=['metrics/x.json'], stream=False)
    assert not (tmp_path / 'metrics').exists() and (tmp_path / 'reports/failed/demo.ipynb').exists()
    nb.cells = nb.cells[:2]; nbformat.write(nb, tmp_path / 'nbs/pipeline/demo.ipynb')
    run_notebook('demo', tmp_path, outputs=['metrics/x.json'], stream=False)
    assert (tmp_path / 'metrics/x.json').read_text() == '{}'


def test_run_notebook_publishes_over_a_stale_old_output(tmp_path):
    "A publish killed between its renames and its clean-up leaves `models.old` behind: the next run still publishes, and removes it."
    import nbformat
    from mlops_kit.pipeline import run_notebook
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}})
    nb.cells = [nbformat.v4.new_code_cell("root = '.'\nout = None", metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell("from pathlib import Path\nm = Path(out) / 'models/sub/deeper'\nm.mkdir(parents=True)\n"
                                          "(m / 'm.txt').write_text('new')")]
    (tmp_path / 'nbs/pipeline').mkdir(parents=True); nbformat.write(nb, tmp_path / 'nbs/pipeline/demo.ipynb')
    for tree in ('models/sub', 'models.old/sub/deeper'):                  # the current output, and the stale one
        (tmp_path / tree).mkdir(parents=True); (tmp_path / tree / 'm.txt').write_text('old')
    run_notebook('demo', tmp_path, outputs=['models'], stream=False)
    assert [p.relative_to(tmp_path / 'models').as_posix() for p in (tmp_path / 'models').rglob('*.txt')] == ['sub/deeper/m.txt']
    assert (tmp_path / 'models/sub/deeper/m.txt').read_text() == 'new' and not (tmp_path / 'models.old').exists()


def test_parallel_map_over_processes_keeps_key_order():
    import numpy as np
    from mlops_kit.fleet import parallel_map
    items = {f'm{i}': list(range(i + 1)) for i in range(5)}
    assert parallel_map(np.sum, items, workers=2, progress=False) == {k: sum(v) for k, v in items.items()}
