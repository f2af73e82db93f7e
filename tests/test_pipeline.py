"The data spine end to end: sample -> ingest -> validate -> windows, through the CLI functions and through DVC."
import json, os, shutil, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_kit import cli

from conftest import ROOT
BIN = Path(sys.executable).parent
SMALL = {'sample': {'days': 75, 'n_services': 6}}  # smallest fleet that still holds 60 + 7 days


def _write_params(dst: Path, overrides=SMALL):
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())
    for sec, kv in overrides.items(): raw[sec].update(kv)
    (dst / 'params.yaml').write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "Run the four stages once on a small sample; return (root, params, per-stage results)."
    root = tmp_path_factory.mktemp('pipeline')
    raw = _write_params(root)
    res = {s: getattr(cli, s)(root=root) for s in ('sample', 'ingest', 'validate', 'windows')}
    return root, raw, res


def test_reconciliation(run):
    root, raw, res = run
    m = json.loads((root / 'metrics/ingest.json').read_text())
    assert m['rows_in'] == m['rows_accepted'] + m['rows_quarantined']
    n_raw = len(pd.read_parquet(root / raw['sample']['out_dir'] / 'requests.parquet', columns=['ts']))
    assert m['rows_in'] == n_raw
    assert res['ingest']['rows_in'] == m['rows_in']


def _pii_values(root, raw):
    pii = raw['ingest']['pii_columns']
    df = pd.read_parquet(root / raw['sample']['out_dir'] / 'requests.parquet', columns=pii)
    vals = set()
    for c in pii: vals |= set(df[c].astype(str).unique())
    return pii, vals


def test_no_pii_in_any_written_file(run):
    "Every file the stages wrote (outside the raw sample folder) is free of PII column names and values."
    root, raw, _ = run
    pii, values = _pii_values(root, raw)
    assert len(values) > 100  # the sample really carries PII, so the check below can fail
    raw_dir = (root / raw['sample']['out_dir']).resolve()
    files = [f for f in root.rglob('*') if f.is_file() and raw_dir not in f.resolve().parents and f.name != 'params.yaml']
    assert any(f.suffix == '.parquet' for f in files) and any(f.suffix == '.csv' for f in files)
    for f in files:
        if f.suffix == '.parquet':  # compressed: check the decoded table, names and every string cell
            df = pd.read_parquet(f)
            assert not set(pii) & set(df.columns), f
            for c in df.columns:
                if df[c].dtype == object or isinstance(df[c].dtype, pd.CategoricalDtype):
                    assert not set(df[c].astype(str).unique()) & values, (f, c)
        elif f.suffix != '.png':
            text = f.read_text(errors='ignore')
            assert not [c for c in pii if c in text], f
            assert not [v for v in values if v in text], f


def test_windows_cover_60_days_on_grid(run):
    root, raw, res = run
    man = json.loads((root / raw['windows']['out_dir'] / 'manifest.json').read_text())
    train = pd.read_parquet(root / raw['windows']['out_dir'] / 'train.parquet')
    ok = [m for m, d in man['monitors'].items() if d['status'] == 'ok']
    assert ok, man['monitors']
    for mid in ok:
        ts = train.loc[train.monitor_id == mid, 'ts']
        assert (ts.diff().dropna() == pd.Timedelta('5min')).all()
        assert ts.max() - ts.min() == pd.Timedelta('60D') - pd.Timedelta('5min')


def test_outputs_lists_every_stage(run, capsys):
    root, _, _ = run
    found = cli.outputs(root=root)
    assert {w for w, _, _ in found} >= {'signals + quarantine', 'training windows + manifest', 'quality report (index.html)'}
    assert 'outputs:' in capsys.readouterr().out


def test_cli_reports_bad_params_clearly(tmp_path):
    _write_params(tmp_path, {'windows': {'days': -1}})
    p = subprocess.run([str(BIN / 'mlops-kit'), '--root', str(tmp_path), 'windows'], capture_output=True, text=True)
    assert p.returncode == 2
    assert 'windows.days = -1' in p.stderr and 'Traceback' not in p.stderr


def _sh(cmd, cwd, env):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    assert p.returncode == 0, f'{cmd}\n{p.stdout}\n{p.stderr}'
    return p.stdout + p.stderr


def test_dvc_repro_noop_and_backfill(tmp_path):
    "dvc repro (of the data spine) runs its stages; a second repro runs none; dvc exp run -S windows.as_of back-fills an older window."
    for f in ('dvc.yaml', '.dvcignore'): shutil.copy(ROOT / f, tmp_path / f)
    shutil.copytree(ROOT / 'mlops_kit', tmp_path / 'mlops_kit', ignore=shutil.ignore_patterns('__pycache__'))
    _write_params(tmp_path)
    env = {**os.environ, 'PATH': f"{BIN}:{os.environ['PATH']}", 'DVC_NO_ANALYTICS': '1',
           'GIT_AUTHOR_NAME': 't', 'GIT_AUTHOR_EMAIL': 't@t', 'GIT_COMMITTER_NAME': 't', 'GIT_COMMITTER_EMAIL': 't@t'}
    _sh('git init -q && dvc init -q && dvc config core.analytics false', tmp_path, env)
    out = _sh('dvc repro windows validate', tmp_path, env)     # train/evaluate: tests/test_level1.py
    assert all(f"Running stage '{s}'" in out for s in ('sample', 'ingest', 'validate', 'windows')), out
    out = _sh('dvc repro windows validate', tmp_path, env)
    assert 'Running stage' not in out and 'up to date' in out, out
    man = json.loads((tmp_path / 'data/windows/manifest.json').read_text())
    older = (pd.Timestamp(man['as_of']) - pd.Timedelta('3D')).date().isoformat()
    _sh('git add -A && git commit -qm base', tmp_path, env)
    out = _sh(f'dvc exp run -S windows.as_of={older} windows', tmp_path, env)
    assert "Running stage 'windows'" in out and "Running stage 'ingest'" not in out, out
    man2 = json.loads((tmp_path / 'data/windows/manifest.json').read_text())
    assert man2['as_of'] == older


def test_bench_models_on_pipeline_windows(run):
    "`mlops-kit bench models` reads the windows and labels the pipeline wrote; peers that are not installed are skipped, never faked."
    root, _, _ = run
    tab = cli.bench('models', root=root, monitors=2, peers='ets')
    assert list(tab.index) == ['kit (AutoML, daily refit)', 'kit (single fit)', 'statsmodels ExponentialSmoothing']
    assert (tab.median_s_per_monitor > 0).all() and tab.loc['kit (AutoML, daily refit)', 'x_kit_time'] == 1.0
    assert (root / 'reports/bench/models.md').read_text().count('\n|') == 5   # header, rule, three models
    per = pd.read_csv(root / 'reports/bench/models.csv')
    assert per.monitor_id.nunique() == 2 and len(per) == 6
