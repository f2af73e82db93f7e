"""Pipeline telemetry and the `mlops-kit report` dashboard: records from real stage commands (ok and failed), and the dashboard
built on a small real project (MLflow sqlite store with runs, registry and SLO, telemetry, a drift report), loaded in headless
Debian Chromium over the DevTools protocol: no console errors, every plot decoded."""
import fcntl, json, os, select, shutil, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_kit.cli import main
from mlops_kit.config import load_params
from mlops_kit.telemetry import read_log

from conftest import ROOT
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-extensions', '--mute-audio']


# ---------------------------------------------------------------- headless Chromium over the DevTools protocol (--remote-debugging-pipe)
class Chromium:
    "Debian's chromium, driven through the DevTools protocol on fds 3/4 (no port, no extra Python package)."
    def __init__(self, user_data_dir: Path, timeout: float = 60):
        exe = shutil.which('chromium')
        if exe is None:
            pytest.fail("chromium is not installed: run `make test-deps-chromium` (apt-get install -y chromium chromium-driver); "
                        "`make test` does this first")
        to_child_r, self.to_child = os.pipe(); self.from_child, from_child_w = os.pipe()
        hi = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w)]    # out of the way of 3/4 before dup2 in the child
        def fds():
            os.dup2(hi[0], 3); os.dup2(hi[1], 4)
        self.proc = subprocess.Popen([exe, *FLAGS, '--remote-debugging-pipe', f'--user-data-dir={user_data_dir}', 'about:blank'],
                                     pass_fds=(3, 4, *hi), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for fd in (to_child_r, from_child_w, *hi): os.close(fd)
        self.timeout, self.buf, self.id, self.events = timeout, b'', 0, []

    def _read(self, deadline):
        while b'\0' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_child], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout}s")
            chunk = os.read(self.from_child, 1 << 20)
            if not chunk: raise RuntimeError(f"chromium exited: {self.proc.stderr.read().decode()[-2000:] if self.proc.poll() is not None else ''}")
            self.buf += chunk
        msg, self.buf = self.buf.split(b'\0', 1)
        return json.loads(msg)

    def send(self, method, session=None, **params):
        self.id += 1; msg = {'id': self.id, 'method': method, 'params': params} | ({'sessionId': session} if session else {})
        os.write(self.to_child, json.dumps(msg).encode() + b'\0')
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read(deadline)
            if m.get('id') == self.id:
                if 'error' in m: raise RuntimeError(f"{method}: {m['error']}")
                return m['result']
            self.events.append(m)

    def wait_event(self, method, session):
        deadline = time.monotonic() + self.timeout
        while not any(e.get('method') == method and e.get('sessionId') == session for e in self.events):
            self.events.append(self._read(deadline))

    def close(self):
        try: self.send('Browser.close')
        except Exception: pass
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        for fd in (self.to_child, self.from_child): os.close(fd)


def load_in_chromium(html: Path, tmp: Path, screenshot: Path | None = None) -> dict:
    "Open `html` in headless Chromium; return console errors/warnings, uncaught exceptions, log errors and every image's decoded size."
    b = Chromium(tmp / 'chromium-profile')
    try:
        target = b.send('Target.createTarget', url='about:blank')['targetId']
        s = b.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for dom in ('Runtime', 'Log', 'Page'): b.send(f'{dom}.enable', s)
        b.send('Page.navigate', s, url=html.resolve().as_uri()); b.wait_event('Page.loadEventFired', s)
        ev = b.send('Runtime.evaluate', s, returnByValue=True, expression=
                    "JSON.stringify({images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight})),"
                    " sections: [...document.querySelectorAll('section')].map(x => x.id), missing: document.querySelectorAll('.missing').length,"
                    " errors: document.querySelectorAll('.error').length, title: document.title})")
        if screenshot is not None:
            b.send('Emulation.setDeviceMetricsOverride', s, width=1280, height=900, deviceScaleFactor=1, mobile=False)
            png = b.send('Page.captureScreenshot', s, format='png', captureBeyondViewport=True)['data']
            import base64; screenshot.write_bytes(base64.b64decode(png))
        page = json.loads(ev['result']['value'])
        evs = [e for e in b.events if e.get('sessionId') == s]
        page['console'] = [(e['params']['type'], ' '.join(str(a.get('value', a.get('description', ''))) for a in e['params']['args']))
                           for e in evs if e['method'] == 'Runtime.consoleAPICalled' and e['params']['type'] in ('error', 'assert', 'warning')]
        page['exceptions'] = [e['params']['exceptionDetails'].get('text') for e in evs if e['method'] == 'Runtime.exceptionThrown']
        page['log'] = [(e['params']['entry']['level'], e['params']['entry']['text']) for e in evs
                       if e['method'] == 'Log.entryAdded' and e['params']['entry']['level'] in ('error', 'warning')]
        return page
    finally: b.close()


# ---------------------------------------------------------------- a small real project
def _rec(run, stage, start, wall, **kw):
    return {'v': 1, 'run': run, 'stage': stage, 'status': 'ok', 'error': None, 'start': start, 'end': start, 'wall_s': wall, 'cpu_s': 1.6 * wall,
            'cpu_self_s': 0.4 * wall, 'cpu_children_s': 1.2 * wall, 'peak_rss_mb': 400.0, 'cpu_hour_price': 0.05, 'cost_usd': 1.6 * wall / 3600 * 0.05,
            'rows_in': 6, 'rows_out': 6, 'rows_unit': 'monitors', 'as_of': '2026-10-21', 'mlflow_run_id': None, 'dvc_exp_name': None, **kw}


@pytest.fixture(scope='module')
def proj(tmp_path_factory):
    "A tiny project: params, a real telemetry record (sample stage), fabricated older ones, an MLflow store with three evaluated runs, "
    "a registry with a champion and its SLO table, a drift report."
    import mlflow
    from mlflow.tracking import MlflowClient
    from mlops_kit.tracking import experiment
    root = tmp_path_factory.mktemp('dash')
    uri = f'sqlite:///{root}/mlflow.db'
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())
    raw['sample'].update(days=3, n_services=1); raw['tracking'].update(uri=uri, experiment='t')
    (root / 'params.yaml').write_text(yaml.safe_dump(raw, sort_keys=False))
    old = [_rec(f'dvc-1-2026112{d}', s, f'2026-11-2{d}T10:0{i}:00.000+00:00', w, **({'status': 'failed', 'error': 'StageError: stage train failed'} if (d, s) == (4, 'train') else {}))
           for d in (3, 4) for i, (s, w) in enumerate([('sample', 4.3), ('ingest', 7.1), ('validate', 2.4), ('windows', 0.5), ('train', 39.2), ('evaluate', 38.7), ('register', 8.6)])
           if not (d == 4 and s in ('evaluate', 'register'))]
    (root / 'logs').mkdir(); (root / 'logs/telemetry.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in old))
    assert main(['--root', str(root), 'sample']) == 0                     # a real record, appended to the fabricated ones
    eid = experiment('t', uri); ids = []
    for s, k in [(48.9, 9.1), (48.9, 7.3), (51.0, 6.9)]:
        with mlflow.start_run(experiment_id=eid) as r:
            mlflow.log_metrics({'eval.static_alerts_per_day': s, 'eval.alerts_per_day': k, 'eval.alert_reduction': 1 - k / s, 'eval.recall': 1.0,
                                'eval.static_recall': 1.0, 'eval.mase_median': 0.66})
            with mlflow.start_run(run_name='evaluate', nested=True): mlflow.log_metric('eval.alerts_per_day', k)
        ids.append(r.info.run_id)
    c = MlflowClient(uri); name = raw['register']['model_name']; c.create_registered_model(name)
    c.create_model_version(name, f'runs:/{ids[0]}/fleet_bundle', ids[0], tags={'gate.passed': 'true'})
    c.create_model_version(name, f'runs:/{ids[1]}/fleet_bundle', ids[1], tags={'gate.passed': 'false', 'gate.recall': 'FAIL: 0.5 not >= 0.95'})
    c.set_registered_model_alias(name, 'champion', '1'); c.set_registered_model_alias(name, 'challenger', '2')
    with mlflow.start_run(run_id=ids[0]):
        mlflow.log_table(pd.DataFrame({'rate_rps': [50.0, 100.0, 200.0], 'p50_ms': [16.3, 40.0, 900.0], 'p95_ms': [79.0, 800.0, 5000.0],
                                       'p99_ms': [222.0, 3000.0, 9000.0], 'error_rate': [0.0, 0.62, 1.0], 'throughput_rps': [50.0, 15.0, 0.0],
                                       'cpu_s_per_1k_predictions': [1.3, 1.1, 0.0], 'slo_met': [False, False, False]}), 'serve/slo.json')
    (root / 'metrics').mkdir(); (root / 'reports/monitor').mkdir(parents=True)
    (root / 'metrics/monitor.json').write_text(json.dumps({'monitors': 4, 'drifted': 1, 'drifted_share': 0.25, 'retrain': True, 'new_days': 7, 'as_of': '2026-10-28'}))
    rng = np.random.default_rng(0)
    pd.DataFrame({'monitor_id': [f'svc{i}.latency_p95' for i in range(4)], 'ks_value_p': rng.uniform(0.1, 0.9, 4).round(3), 'psi_value': [0.03, 0.6, 0.05, 0.08],
                  'ks_resid_p': [0.5, 1e-8, 0.4, 0.3], 'psi_resid': [0.02, 0.4, 0.04, 0.05], 'error_ratio': [1.0, 2.9, 1.1, 0.9],
                  'alerts_per_day_train': [1.0, 1.3, 0.7, 0.4], 'alerts_per_day_new': [1.1, 8.0, 0.6, 0.4], 'drifted': [False, True, False, False],
                  'reasons': ['', 'psi_value; error_ratio', '', '']}).to_csv(root / 'reports/monitor/drift.csv', index=False)
    return root, uri


# ---------------------------------------------------------------- telemetry
def test_stage_commands_write_a_record_each_also_when_they_fail(proj, capsys):
    root, _ = proj
    recs = read_log(root / 'logs/telemetry.jsonl')
    r = recs[-1]
    assert (r['stage'], r['status'], r['error']) == ('sample', 'ok', None)
    assert r['rows_out'] > 0 and r['rows_unit'] and r['cpu_s'] > 0 and r['peak_rss_mb'] > 50 and r['wall_s'] > 0
    assert r['cost_usd'] == round(r['cpu_s'] / 3600 * 0.05, 6) and r['start'] < r['end'] and r['start'].endswith('+00:00')
    assert r['run'].startswith('pid-') and r['mlflow_run_id'] is None and r['as_of'] is None
    n = len(recs)                                                          # a stage that fails: its record says so, then the error surfaces as before
    assert main(['--root', str(root), 'validate']) == 2                    # no signals in this project
    f = read_log(root / 'logs/telemetry.jsonl')[n:]
    assert [(x['stage'], x['status']) for x in f] == [('validate', 'failed')], f
    assert f[0]['error'].startswith('FileNotFoundError') and f[0]['rows_note'] == 'stage failed'
    err = capsys.readouterr().err.strip().splitlines()
    assert json.loads(err[-2])['stage'] == 'validate' and err[-1].startswith('mlops-kit validate: error:')


def test_every_pipeline_stage_command_is_measured():
    from mlops_kit import cli
    stages = yaml.safe_load((ROOT / 'dvc.yaml').read_text())['stages']
    assert {s for s in stages if getattr(cli.COMMANDS[s], 'telemetry_stage', None) == s} == set(stages)


def test_price_comes_from_params(tmp_path):
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text()); raw['report']['cpu_hour_price'] = 2.0; raw['report']['telemetry_log'] = 'elsewhere/t.jsonl'
    raw['sample'].update(days=2, n_services=1); (tmp_path / 'params.yaml').write_text(yaml.safe_dump(raw))
    assert main(['--root', str(tmp_path), 'sample']) == 0
    r, = read_log(tmp_path / 'elsewhere/t.jsonl')
    assert r['cpu_hour_price'] == 2.0 and r['cost_usd'] == round(r['cpu_s'] / 3600 * 2.0, 6)


# ---------------------------------------------------------------- dashboard
def test_dashboard_sections_with_and_without_data(proj, tmp_path):
    root, _ = proj
    assert main(['--root', str(root), 'report']) == 0
    page = (root / 'reports/dashboard/index.html').read_text()
    for s in ('stages', 'alerts', 'registry', 'slo', 'drift'): assert f'<section id="{s}">' in page
    assert page.count('<img ') == 4 and '<script' not in page and 'https://' not in page and 'http://' not in page
    assert 'champion: mlops_kit_fleet v1' in page and '1 of 4 monitors drifted (25%) · retrain TRIGGERED' in page
    assert 'StageError: stage train failed' in page and '51.0 → 6.9 alerts/day' in page and '50 req/s p99 222.0 ms' in page
    (tmp_path / 'params.yaml').write_text((root / 'params.yaml').read_text().replace(str(root), str(tmp_path)))
    assert main(['--root', str(tmp_path), 'report']) == 0                 # an empty project: a sentence per section, no crash, no store created
    empty = (tmp_path / 'reports/dashboard/index.html').read_text()
    assert empty.count('class="missing"') == 5 and '<img ' not in empty and not (tmp_path / 'mlflow.db').exists()
    assert 'no drift report yet (run mlops-kit monitor)' in empty and 'no telemetry yet' in empty


def test_drift_section_reports_a_broken_table_without_losing_the_page(proj, tmp_path, capsys):
    root, _ = proj
    (tmp_path / 'params.yaml').write_text((root / 'params.yaml').read_text().replace(str(root), str(tmp_path)))
    (tmp_path / 'reports/monitor').mkdir(parents=True); (tmp_path / 'reports/monitor/drift.csv').write_text('monitor_id,psi\na,1\n')
    assert main(['--root', str(tmp_path), 'report']) == 2
    page = (tmp_path / 'reports/dashboard/index.html').read_text()
    assert 'class="error"' in page and "missing column(s) [&#x27;ks_value_p&#x27;" in page
    assert "section(s) ['drift'] failed" in capsys.readouterr().err


def test_dashboard_in_headless_chromium(proj, tmp_path):
    "Acceptance: the page loads in Debian's Chromium without console errors and every plot is a decoded image."
    root, _ = proj
    assert main(['--root', str(root), 'report']) == 0
    page = load_in_chromium(root / 'reports/dashboard/index.html', tmp_path, screenshot=root / 'reports/dashboard/screenshot.png')
    assert page['title'] == 'mlops_kit dashboard' and page['sections'] == ['stages', 'alerts', 'registry', 'slo', 'drift']
    assert (page['console'], page['exceptions'], page['log']) == ([], [], []), page
    assert len(page['images']) == 4 and all(i['complete'] and i['w'] > 100 and i['h'] > 50 for i in page['images']), page['images']
    assert page['errors'] == 0 and page['missing'] == 0


def test_the_chromium_check_can_fail(tmp_path):
    "A broken image, a failing script and a console error are all caught by the same check."
    bad = tmp_path / 'bad.html'
    bad.write_text('<!doctype html><html><head><link rel="icon" href="data:,"></head><body><img alt="x" src="data:image/png;base64,bm90IGEgcG5n">'
                   '<script>console.error("boom"); undefined_fn();</script></body></html>')
    page = load_in_chromium(bad, tmp_path)
    assert page['images'][0]['w'] == 0
    assert any('boom' in text for _, text in page['console']) and page['exceptions'], page
