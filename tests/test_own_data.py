"""Own data end to end (issue 14): the own-data tutorial on a scratch git + DVC project takes a folder of one-file-per-metric exports with a
labels file to a served champion (tests share that project, in file order); then a refused experiment (the monitor judges the champion)
and the way back to the baseline. Fast tests first: the short and the empty window, naive label times, blanks in the gate."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SERIAL, ran, scratch_project, set_params, sh

FIXTURE = ROOT / 'tests/fixtures/own_data'


def test_fixture_is_what_its_script_writes(tmp_path):
    "The committed exports are exactly what the seeded make_exports.py writes (no hand edits, no copied data)."
    import importlib.util
    spec = importlib.util.spec_from_file_location('make_exports', FIXTURE / 'make_exports.py'); mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    for f in mod.write(tmp_path): assert f.read_bytes() == (FIXTURE / f.relative_to(tmp_path)).read_bytes(), f


def test_short_window_reports_nothing_it_did_not_score():
    "Three days of history: whatever the detector does with it, a monitor is judged only if its holdout was scored, and the fleet line never rests on blanks."
    from mlops_kit.config import GateParams
    from mlops_kit.evaluate import KIT_COLUMNS, evaluate_monitor, headline, summarize
    from mlops_kit.register import gate, gate_verdict
    ix = pd.date_range('2026-09-01', periods=6 * 288, freq='5min', tz='UTC')
    y = pd.Series(100 + 20 * np.sin(2 * np.pi * ix.hour / 24) + np.random.default_rng(0).normal(0, 3, len(ix)), index=ix)
    row, frame = evaluate_monitor(y[:3 * 288], y[3 * 288:])
    scored = int(frame.score.notna().sum())
    assert row['judged'] == (scored == row['holdout_points'] > 0), (row, scored)
    if not row['judged']: assert all(np.isnan(row[c]) for c in KIT_COLUMNS), row
    s = summarize(pd.DataFrame([row], index=['m']))
    line = headline(s | {'holdout_days': 3.0, 'static_alerts': 0, 'alerts': None if np.isnan(s['alerts_per_day']) else 0})
    assert 'nan' not in line.lower() and ('1 monitors' in line if row['judged'] else line.startswith('0 of 1 monitors judged (not judged: no score on the holdout 1)')), line
    ok, why = gate_verdict(gate(s | {'schema_ok': True, 'fallback_share': 0.0}, None, GateParams()), s)
    assert row['judged'] or (not ok and why.startswith('gate not judged')), why


def test_empty_window_is_skipped_with_the_dates_that_work(tmp_path):
    "A monitor whose data is from another year: skipped (not 'ok' with a 100 % missing window), with the as_of range that would suit it; the others are cut."
    from mlops_kit.config import WindowsParams
    from mlops_kit.windows import run_windows
    now = pd.date_range('2026-08-01', periods=40 * 288, freq='5min', tz='UTC'); old = pd.date_range('2016-07-24', periods=30 * 288, freq='5min', tz='UTC')
    sig = pd.concat([pd.DataFrame({'monitor_id': 'live', 'ts': now, 'value': 1.0}), pd.DataFrame({'monitor_id': 'stale', 'ts': old, 'value': 2.0})], ignore_index=True)
    (tmp_path / 'data/signals').mkdir(parents=True); sig.to_parquet(tmp_path / 'data/signals/signals.parquet')
    cat = {m: {'interval': '5min'} for m in ('live', 'stale')}
    (tmp_path / 'data/signals/monitors.json').write_text(json.dumps({'monitors': cat}))
    m = run_windows(WindowsParams(days=30, min_days=14, holdout_days=7), root=tmp_path)
    assert (m['n_ok'], m['n_skipped']) == (1, 1), m
    assert m['skipped']['stale'] == ('no data in the window 2026-08-04 .. 2026-09-02; its data covers 2016-07-24 .. 2016-08-22; '
                                     'windows.as_of between 2016-08-06 and 2016-08-15 would work for it'), m['skipped']
    assert set(pd.read_parquet(tmp_path / 'data/windows/train.parquet').monitor_id) == {'live'}


def test_labels_without_a_time_zone_are_utc(tmp_path):
    "Labels as people write them (no zone, a space, no seconds) compare with the holdout's UTC times; the evaluate crash on naive labels is gone."
    from mlops_kit.evaluate import holdout_incidents, read_labels
    lab = read_labels(FIXTURE, 'labels.csv')
    assert str(lab.start.dt.tz) == 'UTC' and lab.start.iloc[0] == pd.Timestamp('2026-09-12 14:10', tz='UTC')
    hold = pd.date_range('2026-09-29', periods=7 * 288, freq='5min', tz='UTC')
    assert list(holdout_incidents(lab, 'checkout_latency_p95', hold).start) == [pd.Timestamp('2026-09-30 10:20', tz='UTC')]


def test_blanks_in_the_gate_are_not_judged_the_same_way_for_every_criterion():
    "A blank recall (no incidents) and a blank MASE are both 'not judged', neither a pass nor a fail; the console and the card say so, without nan."
    from mlops_kit.config import GateParams
    from mlops_kit.evaluate import headline
    from mlops_kit.register import gate, gate_verdict
    ch = {'monitors': 4, 'judged': 4, 'alerts_per_day': 2.0, 'noisy_after': 0, 'noisy_monitors': 1, 'recall': float('nan'), 'static_recall': float('nan'),
          'mase_median': float('nan'), 'schema_ok': True, 'fallback_share': 0.0}
    v = gate(ch, None, GateParams()).set_index('criterion')
    assert list(v.status[['recall', 'median MASE']]) == ['not judged'] * 2 and not v.passed[['recall', 'median MASE']].any(), v
    assert (v.status.drop(['recall', 'median MASE']) == 'pass').all()
    ok, why = gate_verdict(v.reset_index(), ch)
    assert ok and why.startswith('gate passed; not judged: recall (no labelled incident') and 'median MASE (' in why and 'nan' not in why.lower(), why
    line = headline(ch | {'static_alerts': 0, 'alerts': 14, 'alert_reduction': float('nan'), 'holdout_days': 7.0})
    assert '(no static alert to compare)' in line and 'recall not judged' in line and 'nan' not in line.lower(), line


def test_drift_statistics_stay_in_the_metrics_units():
    "A gauge the model fits exactly most of the time (3 replicas, now and then 4): the residual shift was 333,333,333 'noise'; it is a third of a replica."
    from mlops_kit.automl import tune
    from mlops_kit.config import MonitorParams
    from mlops_kit.monitor import drift_stats, flag_drift
    rng = np.random.default_rng(3)
    ix = pd.date_range('2026-09-01', periods=35 * 288, freq='5min', tz='UTC')
    y = pd.Series(3.0 + (rng.random(len(ix)) < 0.03), index=ix)
    win, new = y[:28 * 288], y[28 * 288:] + (rng.random(7 * 288) < 0.3)            # the new week: 4 replicas a third of the time
    s = drift_stats(tune(win, budget_s=1.0), win, new)
    assert s['resid_noise'] == 1.0 and abs(s['resid_median_shift'] - 1 / 3) < 0.05 and abs(s['resid_shift']) < 1, s
    f = flag_drift(pd.DataFrame([s | {'monitor_id': 'replicas'}]), MonitorParams())
    assert f.drifted[0] and not f.reasons.str.contains(r'\d{5}', regex=True)[0], f.reasons[0]     # drifted (error, alerts), in sane numbers


@pytest.fixture(scope='module')
def own(tmp_path_factory):
    "A scratch clone on which the own-data tutorial ran: params edited, exports copied, dvc repro, the champion served, the baseline committed."
    import papermill as pm
    root, _ = scratch_project(tmp_path_factory.mktemp('own'), SERIAL)
    with pytest.MonkeyPatch.context() as mp:          # the project's own store (an earlier test's mlflow.set_tracking_uri sets this variable)
        mp.delenv('MLFLOW_TRACKING_URI', raising=False)
        pm.execute_notebook(str(root / 'nbs/tutorials/own_data.ipynb'), str(root / 'own_data.out.ipynb'), parameters={'root': str(root), 'exports': str(FIXTURE)},
                            kernel_name='python3', progress_bar=False, cwd=str(root / 'nbs/tutorials'))
    return root


def test_tutorial_reaches_a_served_champion_without_the_sample(own):
    "The tutorial ran to the end (its own asserts: 5 of 5 judged, the stale export skipped with dates, a promoted champion answering over REST); no sample was generated or read."
    root = own
    assert [f.name for f in (root / 'data/sample').iterdir()] == ['README.txt']                  # sample.enabled: false: a note, not 40 MB
    ev, reg = (json.loads((root / f'metrics/{s}.json').read_text()) for s in ('evaluate', 'register'))
    assert ev['incidents'] == 3 and 0 <= ev['recall'] <= 1 and (reg['version'], reg['promoted'], reg['champion']) == (1, True, 1), (ev, reg)
    cat = json.loads((root / 'data/signals/monitors.json').read_text())['monitors']
    assert cat['checkout_latency_p95']['file'] == 'metrics/checkout_latency_p95.csv' and cat['checkout_latency_p95']['owner'] == 'sre-oncall'
    q = pd.read_csv(root / 'data/signals/quarantine.csv')
    assert sorted(q.reason) == ['malformed line: 1 fields, expected 2'] + ['missing value'] * 3 and set(q.file) == {'db_cpu_percent.csv'}
    card = (root / 'reports/register/model_card.md').read_text()
    assert '`legacy_worker_heartbeat`: skipped, not in this model (no data in the window' in card and 'owners: sre-oncall (5)' in card
    d = pd.read_csv(root / 'reports/monitor/drift.csv')                                        # drift in the metrics' own units, sane magnitudes
    assert d.resid_shift.abs().max() < 100 and not d.reasons.fillna('').str.contains(r'e\+\d', regex=True).any(), d[['monitor_id', 'resid_shift', 'reasons']]


def test_stage_deps_follow_the_configured_paths(own):
    "evaluate, register and monitor depend on the raw folder holding the labels (not on the sample): editing the labels re-runs them, not train."
    import yaml
    root = own
    lock = yaml.safe_load((root / 'dvc.lock').read_text())['stages']
    for st in ('evaluate', 'register', 'monitor'):
        deps = {d['path'] for d in lock[st]['deps']}
        assert 'data/own' in deps and not any(p.startswith('data/sample') for p in deps), (st, deps)
    lab = root / 'data/own/labels.csv'; before = lab.read_text()
    lab.write_text(before + 'queue_depth,2026-10-01 08:00,2026-10-01 08:30,a new label\n')
    try: changed = set(json.loads(sh('dvc status --json', root).stdout))
    finally: lab.write_text(before)
    assert {'evaluate', 'register', 'monitor'} <= changed and 'train' not in changed and 'windows' not in changed, changed


def test_refused_experiment_monitor_judges_the_champion_and_the_way_back(own):
    """A deliberately worse `dvc exp run` (train.budget_s=0.001 starves the AutoML, so monitors fall back to the seasonal profile) re-runs
    train and every stage after it, registers v2, refused by the gate, and the model card says why: the monitor stage judges champion v1,
    not v2. `mlops-kit baseline` then restores the committed baseline, comments included, without re-running or registering anything."""
    from mlflow.tracking import MlflowClient
    root = own
    params_before = (root / 'params.yaml').read_text()
    set_params(root, train={'budget_s': 0.001})
    assert set(json.loads(sh('dvc status --json', root).stdout)) == {'train'}       # only train reads train.budget_s ...
    p = sh('dvc exp run', root)
    assert ran(p.stdout) == {'train', 'evaluate', 'register', 'monitor'}, p.stdout   # ... and the stages after it re-run: train's output changed
    reg, mon = (json.loads((root / f'metrics/{s}.json').read_text()) for s in ('register', 'monitor'))
    assert (reg['version'], reg['promoted'], reg['champion']) == (2, False, 1) and 'fallback share' in reg['gate_failed'], reg
    assert 'fallback share' in reg['reason'] and 'NOT promoted' in p.stdout, reg
    card = (root / 'reports/register/model_card.md').read_text()
    assert 'Gate verdict: FAILED' in card and '| fallback share |' in card and 'Shadow comparison with the champion' in card
    assert "Previous champion's numbers: recorded on the same holdout." in card     # same window: no re-evaluation needed
    assert mon['judged_model'] == 'champion v1 of mlops_kit_fleet' and 'champion v1 of mlops_kit_fleet:' in p.stdout, mon
    assert (root / 'params.yaml').read_text() != params_before                       # dvc exp run left the variant in the workspace
    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    n_versions = len(c.search_model_versions("name='mlops_kit_fleet'"))
    b = sh('mlops-kit baseline', root)
    assert 'outputs restored from DVC\'s run cache' in b.stdout and 'train.budget_s: 0.001 -> 2.0' in b.stdout and 'champion is v1, as the baseline left it' in b.stdout, b.stdout
    assert (root / 'params.yaml').read_text() == params_before                        # comments and nulls as committed
    assert not sh('git status --porcelain --untracked-files=no', root).stdout.strip()   # dvc.lock and metrics/ back to the committed run
    assert 'up to date' in sh('dvc status', root).stdout
    assert len(c.search_model_versions("name='mlops_kit_fleet'")) == n_versions       # nothing registered on the way back
    assert json.loads((root / 'metrics/register.json').read_text())['version'] == 1
