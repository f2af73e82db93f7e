"""Adversarial inputs, part 1: raw files, params.yaml and hostile names (issue 15). Every case ends in a clear error that names the file,
key or monitor (and echoes no file content), or in quarantine records with a reason; for every bad raw file, rows in = rows accepted +
rows quarantined, with rows in counted here from the file itself, not from the parser."""
import json, os, re, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_kit.config import IngestParams, ParamsError, load_params
from mlops_kit.ingest import IngestError, run_ingest

from conftest import ROOT
HEADER = 'ts,service,status,latency_ms,user_id,email\n'
OK = [f'2026-10-01T00:0{i}:00Z,api,200,{10 + i},u{i},p{i}@x.io' for i in range(7)]


def params(path='raw.csv', **mon) -> IngestParams:
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())['ingest']
    raw |= {'raw_dir': 'raw', 'out_dir': 'signals'}
    raw['sources'][0] |= {'path': path}
    raw['monitors'][0] |= mon
    return IngestParams.model_validate(raw)


def data_records(f: Path) -> int:
    "Records in the raw file, counted independently of ingest: non-empty-file lines minus the CSV header; non-blank lines for JSONL."
    lines = f.read_bytes().split(b'\n')
    if lines and lines[-1] == b'': lines.pop()
    return len(lines) - 1 if f.suffix == '.csv' else sum(1 for l in lines if l.strip())


def ingest(tmp_path, body: bytes, name='raw.csv', **mon):
    "Ingest one raw file; check the books against the file; (metrics, quarantine)."
    (tmp_path / 'raw').mkdir(exist_ok=True); f = tmp_path / 'raw' / name
    f.write_bytes(body)
    m = run_ingest(params(name, **mon), root=tmp_path)
    assert m['rows_in'] == data_records(f) == m['rows_accepted'] + m['rows_quarantined'], m     # nothing lost, counted from the file
    return m, pd.read_csv(tmp_path / 'signals/quarantine.csv', dtype={'value': str}, keep_default_na=False)


def csv(*lines: str) -> bytes:
    return (HEADER + ''.join(l + '\n' for l in lines)).encode()


# ---- raw CSV / JSONL records that must be quarantined, with the lines they occupy -------------------------------------------------
QUARANTINE = [
    ('unclosed quote swallows the rest (the reported case: 7 rows)', csv(*OK[:3], '2026-10-01T00:03:00Z,"api,200,13,u3,p3@x.io', *OK[4:]),
     [5, 6, 7, 8], 'record spans lines 5-8'),
    ('unclosed quote on the last line', csv(*OK[:6], '2026-10-01T00:06:00Z,api,200,"16,u6,p6@x.io'), [8], ''),
    ('a quoted field with a line break', csv(*OK[:2], '2026-10-01T00:02:00Z,"api\nx",200,12,u2,p2@x.io', *OK[3:]), [4, 5], 'record spans lines 4-5'),
    ('a lone carriage return inside a line', csv(*OK[:2], '2026-10-01T00:02:00Z,api,2\r00,12,u2,p2@x.io', *OK[3:]), [4], 'carriage return'),
    ('too many fields', csv(*OK[:3], OK[3] + ',extra,more', *OK[4:]), [5], 'malformed line: 8 fields'),
    ('too few fields', csv(*OK[:3], '2026-10-01T00:03:00Z,api', *OK[4:]), [5], 'malformed line: 2 fields'),
    ('an empty line in the middle', csv(*OK[:3], '', *OK[4:]), [5], 'missing timestamp'),
    ('a NUL byte in the timestamp', csv(*OK[:3], '2026-10-01T00:03\x00:00Z,api,200,13,u3,p3@x.io', *OK[4:]), [5], 'unparseable timestamp'),
    ('an infinite value', csv(*OK[:3], '2026-10-01T00:03:00Z,api,200,inf,u3,p3@x.io', *OK[4:]), [5], 'infinite latency_ms'),
    ('a value that overflows to infinity', csv(*OK[:3], '2026-10-01T00:03:00Z,api,200,1e400,u3,p3@x.io', *OK[4:]), [5], 'non-numeric latency_ms'),
    ('NaN as a value', csv(*OK[:3], '2026-10-01T00:03:00Z,api,200,NaN,u3,p3@x.io', *OK[4:]), [5], 'missing latency_ms'),
    ('a timestamp past pandas\' range', csv(*OK[:3], '9999-12-31T23:59:59Z,api,200,13,u3,p3@x.io', *OK[4:]), [5], 'unparseable timestamp'),
    ('a shell command as a value', csv(*OK[:3], '2026-10-01T00:03:00Z,api,200,$(rm -rf /),u3,p3@x.io', *OK[4:]), [5], 'non-numeric latency_ms'),
    ('a duplicate of an earlier row (a retrying shipper)', csv(*OK[:3], OK[1], *OK[4:]), [5], 'duplicate row'),
]


@pytest.mark.parametrize('what,body,lines,reason', QUARANTINE, ids=[q[0] for q in QUARANTINE])
def test_bad_csv_records_are_quarantined_line_by_line(tmp_path, what, body, lines, reason):
    m, q = ingest(tmp_path, body)
    assert q.row.tolist() == lines and q.reason.str.contains(reason, regex=False).all(), q
    assert not q.value.str.contains('@').any() and 'user_id' not in q.columns


JSONL_OK = [json.dumps({'ts': f'2026-10-01T00:0{i}:00Z', 'service': 'api', 'status': 200, 'latency_ms': 10 + i, 'email': f'p{i}@x.io'}) for i in range(4)]
JSONL = [
    ('a line nested 100,000 deep', '[' * 100_000, 'malformed JSON: nested too deeply'),
    ('a truncated object', '{"ts": "2026-10-01T00:09:00Z", "service": ', 'malformed JSON'),
    ('an array instead of an object', '[1, 2, 3]', 'malformed JSON: not an object'),
    ('NaN as a value', '{"ts": "2026-10-01T00:09:00Z", "service": "api", "status": 200, "latency_ms": NaN}', 'missing latency_ms'),
    ('Infinity as a value', '{"ts": "2026-10-01T00:09:00Z", "service": "api", "status": 200, "latency_ms": Infinity}', 'infinite latency_ms'),
    ('an object as the timestamp', '{"ts": {"$date": 1}, "service": "api", "status": 200, "latency_ms": 1}', 'unparseable timestamp'),
]


@pytest.mark.parametrize('what,line,reason', JSONL, ids=[j[0] for j in JSONL])
def test_bad_jsonl_lines_are_quarantined(tmp_path, what, line, reason):
    m, q = ingest(tmp_path, ('\n'.join(JSONL_OK[:2] + [line] + JSONL_OK[2:]) + '\n').encode(), 'raw.jsonl')
    assert q.row.tolist() == [3] and q.reason.iloc[0].startswith(reason), q


# ---- whole files that cannot be sources: a clear error naming the source, nothing read, nothing echoed -----------------------------
def _link_out(raw: Path):
    (raw / 'raw.csv').symlink_to('/etc/passwd')

def _link_in(raw: Path):
    (raw / 'real.csv').write_bytes(csv(*OK)); (raw / 'raw.csv').symlink_to(raw / 'real.csv')

def _dir(raw: Path):
    (raw / 'raw.csv').mkdir()

def _fifo(raw: Path):
    os.mkfifo(raw / 'raw.csv')

def _outside(raw: Path):
    (raw.parent / 'outside.csv').write_bytes(csv(*OK))                     # a real CSV, but not in the raw folder

def _garbage_header(raw: Path):
    (raw / 'raw.csv').write_text('root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n')

def _parquet_that_is_csv(raw: Path):
    (raw / 'raw.csv').write_bytes(csv(*OK)); (raw / 'raw.parquet').write_bytes(csv(*OK))

def _invalid_utf8(raw: Path):
    (raw / 'raw.csv').write_bytes(csv(*OK[:2]) + b'2026-10-01T00:05:00Z,\xff\xfe,200,1,u,e\n')


SOURCES = [
    ('symlink to a system file', _link_out, 'raw.csv', "is a symbolic link to /etc/passwd, outside the raw folder"),
    ('a ../ path out of the raw folder', _outside, '../outside.csv', 'is a path to'),
    ('an absolute path out of the raw folder', _outside, 'ABSOLUTE', 'outside the raw folder'),
    ('a directory', _dir, 'raw.csv', 'is a directory'),
    ('a FIFO (would block a reader)', _fifo, 'raw.csv', 'not a regular file'),
    ('a missing file', None, 'nope.csv', "raw file of source 'requests' not found"),
    ('a header that is someone else\'s file', _garbage_header, 'raw.csv', 'names that do not look like a header (not shown)'),
    ('a CSV named .parquet', _parquet_that_is_csv, 'raw.parquet', 'cannot read as Parquet'),
    ('invalid UTF-8', _invalid_utf8, 'raw.csv', 'invalid UTF8'),
]


@pytest.mark.parametrize('what,make,path,needle', SOURCES, ids=[s[0] for s in SOURCES])
def test_unusable_sources_are_clear_errors_without_content(tmp_path, what, make, path, needle):
    (tmp_path / 'raw').mkdir()
    if make: make(tmp_path / 'raw')
    with pytest.raises(IngestError) as e: run_ingest(params(str(tmp_path / 'outside.csv') if path == 'ABSOLUTE' else path), root=tmp_path)
    assert needle in str(e.value), str(e.value)
    assert 'root:x' not in str(e.value) and 'daemon' not in str(e.value)                         # never a line of the file
    assert not (tmp_path / 'signals').exists()                                                     # nothing half-written


def test_symlink_inside_the_raw_folder_is_read(tmp_path):
    (tmp_path / 'raw').mkdir(); _link_in(tmp_path / 'raw')
    m = run_ingest(params(), root=tmp_path)
    assert (m['rows_in'], m['rows_accepted']) == (7, 7)


def test_symlinked_system_file_leaks_nothing_through_the_cli_or_telemetry(tmp_path):
    "The reported case end to end: `mlops-kit ingest` on a source linked to /etc/passwd exits 2; stderr and the telemetry log hold no line of it."
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())
    raw['ingest'] |= {'raw_dir': 'raw'}; raw['ingest']['sources'][0]['path'] = 'raw.csv'; raw['evaluate']['labels'] = None
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(raw)); (tmp_path / 'raw').mkdir(); _link_out(tmp_path / 'raw')
    p = subprocess.run([str(Path(sys.executable).parent / 'mlops-kit'), '--root', str(tmp_path), 'ingest'], capture_output=True, text=True)
    tel = (tmp_path / 'logs/telemetry.jsonl').read_text() if (tmp_path / 'logs/telemetry.jsonl').exists() else ''
    assert p.returncode == 2 and 'outside the raw folder' in p.stderr and 'Traceback' not in p.stderr, p.stderr
    assert 'root:' not in p.stderr + p.stdout + tel and '/bin/bash' not in tel


# ---- filters are data ----------------------------------------------------------------------------------------------------------
ATTACKS = [
    ("status < 500 or __import__('os').system('touch PWNED')", 17, 'a function call'),
    ("@pd.io.common.os.system('touch PWNED')", 1, 'not a valid expression'),
    ("status.__class__.__base__ == 1", 1, 'attribute access'),
    ("(lambda: open('PWNED', 'w'))() == 1", 1, 'a function call'),
    ("status < 500 and [x for x in ().__class__.__subclasses__()]", 18, 'ListComp'),
    ("status == f'{open(\"PWNED\", \"w\")}'", 11, 'an f-string'),
    ("(status := 1)", 2, 'an assignment'),
    ("status < 500; import os", 13, 'not a valid expression'),
    ("`status` < 500", 1, 'not a valid expression'),
    ("status in @allowed", 11, 'not a valid expression'),
]


@pytest.mark.parametrize('flt,pos,what', ATTACKS, ids=[a[0][:40] for a in ATTACKS])
def test_code_in_a_filter_is_refused_at_params_validation_naming_filter_and_position(tmp_path, monkeypatch, flt, pos, what):
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text()); raw['ingest']['monitors'][0]['filter'] = flt
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as e: load_params(tmp_path / 'params.yaml')
    msg = str(e.value)
    assert 'ingest.monitors[0] (latency_p95).filter' in msg and f'at position {pos} ' in msg and what in msg, msg
    assert not list(tmp_path.glob('PWNED*'))


def test_cli_refuses_a_code_filter_before_reading_any_data(tmp_path):
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())
    raw['ingest']['monitors'][0]['filter'] = f"__import__('os').system('touch {tmp_path}/PWNED') == 0"
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(raw))
    p = subprocess.run([str(Path(sys.executable).parent / 'mlops-kit'), '--root', str(tmp_path), 'ingest'], capture_output=True, text=True)
    assert p.returncode == 2 and 'a function call' in p.stderr and not (tmp_path / 'PWNED').exists(), p.stderr


def test_the_sample_filters_select_what_pandas_query_selected(tmp_path):
    "`status < 500` and `status >= 500` keep working: the kit's evaluator and pandas' query (the oracle, here only) pick the same rows."
    from mlops_kit.ingest import eval_filter
    from mlops_kit.sample import write_sample
    write_sample(tmp_path / 's', seed=3, days=2, n_services=3)
    rows = pd.read_parquet(tmp_path / 's/requests.parquet', columns=['status']).astype(float)
    rows.loc[rows.index[:50], 'status'] = np.nan
    for m in load_params(ROOT / 'params.yaml').ingest.monitors:
        pd.testing.assert_index_equal(rows[eval_filter(m.filter, rows)].index, rows.query(m.filter, engine='python').index)


def test_no_eval_or_query_of_config_strings_in_the_package():
    src = ''.join(f.read_text() for f in (ROOT / 'mlops_kit').glob('*.py'))
    assert not re.search(r'\.query\(|(?<![\w.])eval\(|pd\.eval|literal_eval|\bexec\(', src)


# ---- params.yaml as untrusted input -----------------------------------------------------------------------------------------
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + ''.join(f'{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n' for p, c in zip('abcdefgh', 'bcdefghi'))
PARAMS = [
    ('a 10 kB alias bomb', BOMB, 'anchors and aliases'),
    ('one anchor, no alias', 'ingest: &i {sources: [], monitors: []}\n', 'anchors and aliases'),
    ('over 256 kB', 'x: 1\n' * 60_000, 'may be at most 262,144'),
    ('nested 5,000 deep', '[' * 5000, 'not valid YAML'),
    ('a python object tag', 'ingest: !!python/object/apply:os.system ["touch PWNED"]\n', 'not valid YAML'),
    ('a 200,000-character value', f"ingest: {{sources: [], monitors: []}}\nwindows: {{days: '{'9' * 200_000}'}}\n", '200,002 characters'),
    ('300 unknown keys', 'ingest: {sources: [], monitors: []}\nwindows: {' + ', '.join(f'k{i}: {i}' for i in range(300)) + '}\n', '… and 281 more'),   # 300 unknown keys + the labels-outside-raw_dir check, 20 shown
    ('binary garbage', '\x00\x01\x02\xff', 'not valid YAML'),
    ('a list, not a mapping', '- a\n- b\n', 'must be a mapping'),
]


@pytest.mark.parametrize('what,text,needle', PARAMS, ids=[p[0] for p in PARAMS])
def test_hostile_params_yaml_is_refused_with_a_short_message(tmp_path, monkeypatch, what, text, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'params.yaml').write_text(text, errors='surrogateescape')
    with pytest.raises(ParamsError) as e: load_params(tmp_path / 'params.yaml')         # refused before anything is expanded or read whole
    assert needle in str(e.value) and len(str(e.value)) < 4000, str(e.value)[:500]
    assert not (tmp_path / 'PWNED').exists()


@pytest.mark.parametrize('target', ['dir', '/dev/zero'])
def test_params_yaml_that_is_not_a_regular_file(tmp_path, target):
    f = tmp_path / 'params.yaml'
    f.mkdir() if target == 'dir' else f.symlink_to(target)
    with pytest.raises(ParamsError, match='not a regular file'): load_params(f)


# ---- names from data never become paths as they are --------------------------------------------------------------------------
@pytest.mark.parametrize('group', ['../../../evil', 'a/b', 'x' * 3000, 'ctl\x07bell', 'Checkout', '..', ' '])
def test_hostile_group_values_never_leave_their_folder(tmp_path, group):
    "A service name from the raw data becomes a monitor id, then a plot file: validate writes it inside reports/validate/, under a safe name."
    from mlops_kit.config import ValidateParams
    from mlops_kit.guard import safe_name
    from mlops_kit.validate import run_validate
    ix = pd.date_range('2026-10-01', periods=600, freq='5min', tz='UTC')
    rows = [json.dumps({'ts': t.isoformat(), 'service': group if i % 2 else 'api', 'status': 200, 'latency_ms': 5.0}) for i, t in enumerate(ix)]
    m, q = ingest(tmp_path, ('\n'.join(rows) + '\n').encode(), 'raw.jsonl')
    flagged = ValidateParams(max_gap_share=0.0, max_sparsity=0.0, flatline_hours=0.1)           # flag every monitor: each gets a plot
    r = run_validate(flagged, root=tmp_path, signals_dir='signals')
    mid = f'{group}.latency_p95'
    files = {p.name for p in (tmp_path / 'reports/validate').iterdir()}
    assert f'{safe_name(mid)}.png' in files and r['n_monitors'] == 3
    assert all(p.parent == tmp_path / 'reports/validate' for p in tmp_path.rglob('*.png'))
    assert not [p for d in tmp_path.parents[:3] for p in d.glob('*evil*')]                          # nothing written above the project
