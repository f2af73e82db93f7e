"""The continuous-training loop on a scratch git + DVC project: a sample whose first services slow down for good after the training window,
`dvc repro` (the monitor stage finds the drift), then `mlops-kit retrain` (a DVC experiment for the newest window) and the gate's decision."""
import json

import pandas as pd
import pytest
import yaml

from conftest import SERIAL, scratch_project, set_params, sh

SHIFTED = ['api-gateway.latency_p95', 'checkout.latency_p95', 'auth.latency_p95']   # the first 3 live services of a 5-service sample
SCENARIO = {'sample': {'days': 80, 'n_services': 5, 'shift': {'day': 62, 'factor': 1.8, 'services': 3}},   # slower from 2026-10-11 on
            'windows': {'as_of': '2026-10-03'}}                                                         # the model is trained before that


@pytest.fixture(scope='module')
def drifted(tmp_path_factory):
    root, out = scratch_project(tmp_path_factory.mktemp('drift'), SCENARIO | SERIAL, nbs=('pipeline',), repro=True)   # the model is trained before the shift
    return root, out


def test_monitor_finds_the_level_shift_and_calls_for_retraining(drifted):
    root, out = drifted
    v = json.loads((root / 'metrics/monitor.json').read_text())
    d = pd.read_csv(root / 'reports/monitor/drift.csv').set_index('monitor_id')
    assert v['retrain'] and v['as_of'] == '2026-10-03' and v['new_days'] >= 24, v
    assert d.loc[SHIFTED, 'drifted'].all() and d.loc[SHIFTED, 'values'].all() and (d.loc[SHIFTED, 'psi_value'] > 0.5).all(), d.loc[SHIFTED]
    assert d.drop(index=SHIFTED).drifted.sum() <= 1, d[['drifted', 'reasons']]           # the untouched monitors (mostly) are not
    assert 'RETRAIN: run mlops-kit retrain' in out and 'RETRAIN' in (root / 'reports/monitor/index.html').read_text()
    assert len(list((root / 'reports/monitor/monitors').glob('*.png'))) >= 3


def test_retrain_dry_run_changes_nothing(drifted):
    root, _ = drifted
    before = (root / 'params.yaml').read_text()
    p = sh('mlops-kit retrain --dry-run', root)
    assert 'dvc exp run -S windows.as_of=2026-10-21' in p.stdout and 'was 2026-10-03' in p.stdout, p.stdout
    assert (root / 'params.yaml').read_text() == before and json.loads((root / 'metrics/register.json').read_text())['version'] == 1


def test_retrain_runs_the_pipeline_on_the_new_window_and_the_gate_decides(drifted):
    from mlflow.tracking import MlflowClient
    root, _ = drifted
    p = sh('mlops-kit retrain', root)
    assert 'Running stage \'train\'' in p.stdout and 'Running stage \'register\'' in p.stdout, p.stdout[-3000:]
    assert str(yaml.safe_load((root / 'params.yaml').read_text())['windows']['as_of']) == '2026-10-21'   # dvc exp run -S wrote it
    assert 'retrain-2026-10-21' in sh('dvc exp list --name-only', root).stdout
    reg = json.loads((root / 'metrics/register.json').read_text())
    assert reg['version'] == 2 and reg['previous_champion'] == 1, reg
    c = MlflowClient(json.loads((root / 'models/run.json').read_text())['tracking_uri'])
    tags = c.get_model_version('mlops_kit_fleet', '2').tags
    assert tags['gate.passed'] == str(reg['promoted']).lower() and any(k.startswith('gate.') and k != 'gate.passed' for k in tags), tags
    assert int(c.get_model_version_by_alias('mlops_kit_fleet', 'champion').version) == (2 if reg['promoted'] else 1)
    assert ('promoted to champion' if reg['promoted'] else 'NOT promoted, champion stays v1') in p.stdout
    card = (root / 'reports/register/model_card.md').read_text()                  # judged on the same days: v1 replayed on v2's holdout
    assert "Previous champion's numbers: re-evaluated on this version's holdout (its own window ended 2026-10-03)." in card
    log = [json.loads(line) for line in (root / 'audit/audit.jsonl').read_text().splitlines()]
    acts = [e['action'] for e in log]
    i = acts.index('retrain-trigger')
    assert 'as_of 2026-10-21 (was 2026-10-03)' in log[i]['reason'] and ('register', '2') in [(e['action'], str(e['version'])) for e in log[i:]], log
    assert sh('mlops-kit audit verify', root).stdout.strip().endswith('chain intact')
    mon = json.loads((root / 'metrics/monitor.json').read_text())                  # the monitor judges the champion: v2's new window, or v1's if refused
    assert (mon['as_of'], mon['judged_model']) == (('2026-10-21', 'champion v2 of mlops_kit_fleet') if reg['promoted'] else ('2026-10-03', 'champion v1 of mlops_kit_fleet')), mon


def test_retrain_again_without_new_data_is_refused_or_not_needed(drifted):
    root, _ = drifted
    p = sh('mlops-kit retrain', root, ok=False)
    v = json.loads((root / 'metrics/monitor.json').read_text())
    if v['retrain']: assert p.returncode == 2 and 'no newer window to train on' in p.stderr, p.stderr
    else: assert p.returncode == 0 and 'not needed' in p.stdout, p.stdout
