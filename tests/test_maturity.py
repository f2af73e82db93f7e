"""Maturity scorecard (`mlops-kit maturity`): a bare folder of notebooks is level 0 with a how-to per criterion, a minimal level-1
repository built in tmp is level 1 (and drops to 0 when any one criterion is taken away), a level-2 variant reaches 2, and the kit's own
repository meets its level-1 criteria with evidence."""
import json, sqlite3
from pathlib import Path

import pytest
import yaml

from mlops_kit.cli import main
from mlops_kit.maturity import CRITERIA, Repo, scorecard

from conftest import ROOT
LEVEL1 = [i for i, lv, *_ in CRITERIA if lv == 1]
LEVEL2 = [i for i, lv, *_ in CRITERIA if lv == 2]


def write(root: Path, files: dict):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text if isinstance(text, str) else yaml.safe_dump(text, sort_keys=False))
    return root


def by_id(card):
    return {c['id']: c for c in card['criteria']}


NOTEBOOK = json.dumps({'cells': [{'cell_type': 'code', 'metadata': {}, 'source': 'import pandas as pd\ndf = pd.read_csv("data.csv")'}],
                       'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5})


@pytest.fixture
def bare(tmp_path):
    "Level 0: a folder with two notebooks and a CSV, nothing else."
    return write(tmp_path / 'bare', {'explore.ipynb': NOTEBOOK, 'train_model.ipynb': NOTEBOOK, 'data.csv': 'ts,value\n2026-01-01,1\n'})


PARAMS = {'prepare': {'min_rows': 10},
          'train': {'epochs': 3, 'tracking_uri': 'sqlite:///mlflow.db'},
          'register': {'model_name': 'm', 'gate': {'max_mase': 1.0, 'min_recall': 0.9}},
          'monitor': {'drift_psi_max': 0.2, 'error_decay_max': 1.5},
          'serve': {'slo_p99_ms': 20, 'slo_max_error_rate': 0.001}}
DVC_YAML = {'stages': {
    'prepare': {'cmd': 'python prepare.py', 'deps': ['prepare.py', 'data/raw.csv'], 'params': ['prepare'], 'outs': ['data/clean.csv']},
    'train': {'cmd': 'papermill nbs/train.ipynb reports/train.ipynb', 'deps': ['nbs/train.ipynb', 'data/clean.csv'], 'params': ['train'],
              'outs': ['models'], 'metrics': [{'metrics/train.json': {'cache': False}}]},
    'register': {'cmd': 'python register.py', 'deps': ['register.py', 'models'], 'params': ['register']},
    'monitor': {'cmd': 'mlops-kit monitor', 'deps': ['models', 'data/clean.csv'], 'params': ['monitor'],
                'outs': [{'reports/monitor/drift.csv': {'cache': False}}], 'metrics': [{'metrics/monitor.json': {'cache': False}}]}}}
DVC_LOCK = {'schema': '2.0', 'stages': {
    'prepare': {'cmd': 'python prepare.py', 'outs': [{'path': 'data/clean.csv', 'hash': 'md5', 'md5': 'a' * 32, 'size': 10}]},
    'train': {'cmd': 'papermill nbs/train.ipynb reports/train.ipynb', 'outs': [{'path': 'models', 'hash': 'md5', 'md5': 'b' * 32 + '.dir'},
                                                                              {'path': 'metrics/train.json', 'hash': 'md5', 'md5': 'c' * 32}]}}}


def level1_files():
    return {
        '.dvc/config': "[core]\n    remote = local\n['remote \"local\"']\n    url = ../.dvcstore\n",
        'dvc.yaml': DVC_YAML, 'dvc.lock': DVC_LOCK, 'params.yaml': PARAMS,
        'requirements.txt': 'mlflow\ndvc\npapermill\npytest\n',
        'prepare.py': 'import pandas as pd\n',
        'nbs/train.ipynb': json.dumps({'cells': [{'cell_type': 'code', 'metadata': {}, 'source':
                                                  'import mlflow\nmlflow.set_tracking_uri(tracking_uri)\nwith mlflow.start_run():\n    mlflow.log_metric("mae", 1.0)'}],
                                       'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}),
        'register.py': 'import mlflow\nmv = mlflow.register_model("runs:/x/model", "m")\n',
        'cli.py': 'def retrain(params="params.yaml"):\n    "dvc repro when drift is over the threshold"\n',
        'tests/test_prepare.py': 'def test_rows():\n    assert True\n\n\ndef test_cols():\n    assert True\n',
        '.ci/run': '#!/usr/bin/env bash\nset -e\nmake test\n',
        'Makefile': 'test:\n\tpytest -q tests\n\nload-test:  ## SLO check of the served model\n\tlocust -f load.py --headless\n\n'
                    'serve:\n\tmlflow models serve -m models:/m@champion\n',
    }


@pytest.fixture
def level1(tmp_path):
    "Level 1: the minimal files of a pipeline with tracking, a gated registry, tests in CI, a monitor + retrain trigger, an SLO."
    return write(tmp_path / 'level1', level1_files())


def test_bare_folder_of_notebooks_is_level_0_with_a_howto_per_criterion(bare):
    card = scorecard(bare)
    assert card['level'] == 0 and card['met'] == {'1': '0/7', '2': '0/5'}
    c = by_id(card)
    assert not any(x['met'] for x in c.values())
    assert all(x['howto'] for x in c.values())
    assert 'data.csv' in c['versioned_data']['evidence'] and 'dvc init' in c['versioned_data']['howto']
    assert 'explore.ipynb' in c['reproducible_pipeline']['evidence'] and 'dvc stage add' in c['reproducible_pipeline']['howto']
    assert 'mlflow.start_run' in c['tracked_experiments']['howto'] and 'tracking_uri' in c['tracked_experiments']['howto']
    assert 'register_model' in c['registry_gate']['howto'] and 'gate' in c['registry_gate']['howto']
    assert 'tests/test_' in c['tests_in_ci']['howto'] and '.ci/run' in c['tests_in_ci']['howto']
    assert 'monitor' in c['monitoring_retrain']['howto'] and 'retrain' in c['monitoring_retrain']['howto']
    assert 'slo_p99_ms' in c['serving_slo']['howto'] and 'load test' in c['serving_slo']['howto']
    assert 'dvc remote add' in c['shared_remote']['howto']


def test_level1_fixture_is_level_1_with_evidence(level1):
    card = scorecard(level1)
    c = by_id(card)
    assert card['level'] == 1, [x for x in card['criteria'] if x['level'] == 1 and not x['met']]
    assert all(c[i]['met'] and c[i]['evidence'] for i in LEVEL1)
    assert 'dvc.lock: 3/3 outputs hashed (md5)' in c['versioned_data']['evidence'] and 'not locked yet: register, monitor' in c['versioned_data']['evidence']
    assert '4/4 with deps' in c['reproducible_pipeline']['evidence'] and 'notebooks run as stages: nbs/train.ipynb' in c['reproducible_pipeline']['evidence']
    assert 'runs logged in nbs/train.ipynb' in c['tracked_experiments']['evidence'] and 'train.tracking_uri = sqlite:///mlflow.db' in c['tracked_experiments']['evidence']
    assert 'stage register (python register.py)' in c['registry_gate']['evidence'] and '2 gate thresholds (max_mase, min_recall)' in c['registry_gate']['evidence']
    assert c['tests_in_ci']['evidence'] == 'tests/: 1 files, 2 test functions; .ci/run → make test: runs pytest'
    assert 'stage monitor (mlops-kit monitor)' in c['monitoring_retrain']['evidence'] and 'cli.py: retrain command' in c['monitoring_retrain']['evidence']
    assert 'serve.slo_p99_ms = 20' in c['serving_slo']['evidence'] and 'Makefile: target load-test' in c['serving_slo']['evidence']
    assert not any(c[i]['met'] for i in LEVEL2)
    assert 'inside the repo' in c['shared_remote']['evidence']



def test_a_tracking_section_pins_the_store(level1):
    "The store pinned as `tracking.uri` (a section of its own, as the kit does) counts like a `*tracking_uri` key."
    write(level1, {'params.yaml': {**PARAMS, 'train': {'epochs': 3}, 'tracking': {'uri': 'sqlite:///mlflow.db'}}})
    c = by_id(scorecard(level1))
    assert c['tracked_experiments']['met'] and 'params.yaml: tracking.uri = sqlite:///mlflow.db' in c['tracked_experiments']['evidence']

MISSING = [  # (criterion, how to take it away from the level-1 fixture)
    ('versioned_data', lambda f: f.pop('dvc.lock')),
    ('reproducible_pipeline', lambda f: [s.pop('params', None) for s in f['dvc.yaml']['stages'].values()]),
    ('reproducible_pipeline', lambda f: f['dvc.yaml']['stages']['prepare'].pop('deps')),
    ('tracked_experiments', lambda f: f.update({'params.yaml': {**PARAMS, 'train': {'epochs': 3}}, 'nbs/train.ipynb': NOTEBOOK})),
    ('registry_gate', lambda f: f.update({'params.yaml': {**PARAMS, 'register': {'model_name': 'm'}}})),
    ('tests_in_ci', lambda f: f.pop('.ci/run')),
    ('tests_in_ci', lambda f: f.update({'Makefile': f['Makefile'].replace('pytest -q tests', 'flake8')})),
    ('monitoring_retrain', lambda f: f.pop('cli.py')),
    ('monitoring_retrain', lambda f: f['dvc.yaml']['stages'].pop('monitor')),
    ('serving_slo', lambda f: f.update({'params.yaml': {**PARAMS, 'serve': {'rates': [50]}}})),
    ('serving_slo', lambda f: f.update({'Makefile': 'test:\n\tpytest -q tests\n'})),
]


@pytest.mark.parametrize('criterion, take_away', MISSING, ids=[f"{c}-{i}" for i, (c, _) in enumerate(MISSING)])
def test_taking_one_criterion_away_drops_to_level_0(tmp_path, criterion, take_away):
    files = json.loads(json.dumps(level1_files()))
    take_away(files)
    card = scorecard(write(tmp_path / 'repo', files))
    c = by_id(card)
    assert card['level'] == 0 and not c[criterion]['met'] and c[criterion]['howto']
    assert [i for i in LEVEL1 if not c[i]['met']] == [criterion]


@pytest.mark.parametrize('trigger', [
    {'params.yaml': {**PARAMS, 'monitor': {**PARAMS['monitor'], 'retrain_on_drift': True}}},
    {'Makefile': level1_files()['Makefile'] + 'retrain:\n\tdvc repro\n'},
    {'dvc.yaml': {'stages': {**DVC_YAML['stages'], 'retrain': {'cmd': 'mlops-kit retrain', 'deps': ['metrics/monitor.json']}}}},
])
def test_retrain_trigger_is_found_in_params_make_or_dvc(tmp_path, trigger):
    files = level1_files()
    files.pop('cli.py')
    files.update(trigger)
    assert by_id(scorecard(write(tmp_path / 'repo', files)))['monitoring_retrain']['met']


def test_level2_needs_a_team_setup(level1):
    write(level1, {
        '.dvc/config': "[core]\n    remote = team\n['remote \"team\"']\n    url = s3://team-bucket/proj\n",
        'params.yaml': {**PARAMS, 'train': {'epochs': 3, 'tracking_uri': 'http://mlflow.team:5000'}},
        '.github/workflows/ci.yml': 'on: [push]\njobs:\n  ci:\n    steps:\n      - run: make test\n      - run: dvc pull && dvc repro && dvc push\n'
                                    '      - run: mlflow models build-docker -m models:/m@champion -n m && ./deploy.sh\n',
        '.github/workflows/nightly.yml': "on:\n  schedule:\n    - cron: '0 3 * * *'\njobs:\n  n:\n    steps:\n      - run: mlops-kit monitor && mlops-kit retrain\n",
    })
    card = scorecard(level1)
    assert card['level'] == 2 and card['met'] == {'1': '7/7', '2': '5/5'}, [x for x in card['criteria'] if not x['met']]
    c = by_id(card)
    assert "default remote 'team' = s3://team-bucket/proj" in c['shared_remote']['evidence']
    assert '.github/workflows/ci.yml' in c['pipeline_in_ci']['evidence'] and '.github/workflows/nightly.yml' in c['scheduled_trigger']['evidence']
    write(level1, {'.github/workflows/nightly.yml': "on:\n  schedule:\n    - cron: '0 3 * * *'\njobs:\n  n:\n    steps:\n      - run: pytest\n"})
    assert scorecard(level1)['level'] == 1   # a schedule that runs no monitor/retrain is no trigger


def test_local_mlflow_store_is_extra_evidence(level1):
    with sqlite3.connect(level1 / 'mlflow.db') as c:   # the tables and columns MLflow's sqlite store has (read-only use)
        c.executescript("create table experiments (experiment_id int); insert into experiments values (1);"
                        "create table runs (run_uuid text); insert into runs values ('a'), ('b');"
                        "create table registered_models (name text); insert into registered_models values ('m');"
                        "create table model_versions (name text, version int); insert into model_versions values ('m', 1), ('m', 2);"
                        "create table registered_model_aliases (name text, alias text, version int); insert into registered_model_aliases values ('m', 'champion', 2);")
    c = by_id(scorecard(level1))
    assert 'mlflow.db: 1 experiments, 2 runs' in c['tracked_experiments']['evidence']
    assert 'mlflow.db: m, 2 versions, m@champion = v2' in c['registry_gate']['evidence']
    (level1 / 'mlflow.db').write_text('not a database')
    c = by_id(scorecard(level1))
    assert c['tracked_experiments']['met'] and 'mlflow.db: unreadable' in c['tracked_experiments']['evidence']


def test_the_scorecards_own_rubric_is_not_evidence(bare):
    write(bare, {'mlops_kit/maturity.py': 'def retrain(): "import mlflow; mlflow.start_run()"\n', 'tests/test_maturity.py': 'def test_a(): pass\n'})
    card = scorecard(bare)
    assert card['level'] == 0 and not any(x['met'] for x in card['criteria'])
    assert 'mlops_kit/maturity.py' not in Repo(bare).files


def test_cli_table_json_and_errors(bare, level1, capsys):
    assert main(['maturity', str(bare)]) == 0
    out = ' '.join(capsys.readouterr().out.split())   # the table wraps to the terminal
    assert 'level 0 of 2' in out and 'MISSING' in out and '→ git init && dvc init' in out
    assert main(['--root', str(level1 / 'tests'), 'maturity', '--json']) == 0   # no PATH: the repository around --root (found by dvc.yaml)
    card = json.loads(capsys.readouterr().out)
    assert card['level'] == 1 and card['path'] == str(level1.resolve())
    assert main(['maturity', str(bare / 'nope')]) == 2
    assert 'is not a folder' in capsys.readouterr().err
    write(level1, {'dvc.yaml': 'stages:\n  a: [\n'})
    assert main(['maturity', str(level1), '--json']) == 0   # a broken file is a finding, not a crash
    c = by_id(json.loads(capsys.readouterr().out))
    assert not c['versioned_data']['met'] and c['versioned_data']['evidence'].startswith('dvc.yaml: not valid YAML')


def test_the_kits_own_repository_meets_level_1_with_evidence():
    card = scorecard(ROOT)
    c = by_id(card)
    assert card['level'] == 1 and all(c[i]['met'] and c[i]['evidence'] for i in LEVEL1), [c[i] for i in LEVEL1 if not c[i]['met']]
    assert 'stage monitor (mlops-kit monitor)' in c['monitoring_retrain']['evidence'] and 'retrain' in c['monitoring_retrain']['evidence']
    assert 'dvc.lock' in c['versioned_data']['evidence'] and 'outputs hashed (md5)' in c['versioned_data']['evidence']
    assert 'nbs/pipeline/train.ipynb' in c['reproducible_pipeline']['evidence']
    assert 'params.yaml: tracking.uri = null (default)' in c['tracked_experiments']['evidence']
    assert 'stage register (mlops-kit register)' in c['registry_gate']['evidence'] and 'gate thresholds' in c['registry_gate']['evidence']
    assert '.ci/run → make test' in c['tests_in_ci']['evidence'] and 'pytest' in c['tests_in_ci']['evidence']
    assert 'serve.slo_p99_ms' in c['serving_slo']['evidence'] and 'bench_serve' in c['serving_slo']['evidence']
