"The bad-input corpus: every broken raw file ends in quarantine with a reason and a row number, or in a clear error naming the file."
import json, re, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_kit.config import IngestParams, load_params
from mlops_kit.ingest import IngestError, run_ingest

from conftest import ROOT
HEADER = 'ts,service,status,latency_ms,user_id,email\n'
OK = ['2026-10-01T00:00:00Z,api,200,10,u1,a@x.io', '2026-10-01T00:01:00Z,api,503,12,u2,b@x.io', '2026-10-01T00:06:00Z,db,200,5,u3,c@x.io']


def _params(path='raw.csv', tz='UTC', **mon) -> IngestParams:
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())['ingest']
    raw |= {'raw_dir': 'raw', 'out_dir': 'signals'}
    raw['sources'][0] |= {'path': path, 'timezone': tz}
    raw['monitors'][0] |= mon
    return IngestParams.model_validate(raw)


def _run(tmp_path, lines, name='raw.csv', header=HEADER, **kw):
    (tmp_path / 'raw').mkdir(exist_ok=True)
    (tmp_path / 'raw' / name).write_text(header + ''.join(l + '\n' for l in lines))
    m = run_ingest(_params(name, **kw), root=tmp_path)
    assert m['rows_in'] == m['rows_accepted'] + m['rows_quarantined'] == len(lines)  # nothing lost silently
    return m, pd.read_csv(tmp_path / 'signals/quarantine.csv', dtype={'value': str}, keep_default_na=False)


# (what, extra lines appended to three good ones, expected (line number, column, reason start))
QUARANTINED = [
    ('malformed CSV line', ['2026-10-01T00:02:00Z,api,200'], (5, '', 'malformed line: 3 fields, expected 6')),
    ('non-numeric value', ['2026-10-01T00:02:00Z,api,200,fast,u4,d@x.io'], (5, 'latency_ms', 'non-numeric latency_ms')),
    ('missing value', ['2026-10-01T00:02:00Z,api,200,,u4,d@x.io'], (5, 'latency_ms', 'missing latency_ms')),
    ('missing group', ['2026-10-01T00:02:00Z,,200,3,u4,d@x.io'], (5, 'service', 'missing service')),
    ('unparseable timestamp', ['01/10/2026 noonish,api,200,10,u4,d@x.io'], (5, 'ts', 'unparseable timestamp')),
    ('mixed time zones', ['2026-10-01 00:02:00,api,200,10,u4,d@x.io'], (5, 'ts', 'mixed timezones')),
    ('duplicate row', [OK[1]], (5, '', 'duplicate row')),
]


@pytest.mark.parametrize('what,extra,expect', QUARANTINED, ids=[q[0] for q in QUARANTINED])
def test_bad_rows_are_quarantined_with_reason_and_line(tmp_path, what, extra, expect):
    m, q = _run(tmp_path, OK + extra)
    assert (m['rows_accepted'], m['rows_quarantined']) == (3, 1)
    row = q.iloc[0]
    assert (row['row'], row['column']) == expect[:2] and row['reason'].startswith(expect[2]), row.to_dict()
    assert not {'user_id', 'email'} & set(q.columns) and 'x.io' not in q.to_csv()


def test_dst_gap_and_overlap_in_local_time_files(tmp_path):
    "A file written in Europe/Berlin local time without offsets: the spring gap and the autumn repeat hour cannot be placed."
    lines = ['2026-03-29 01:55:00,api,200,10,u1,a@x.io', '2026-03-29 02:30:00,api,200,10,u1,a@x.io',
             '2026-10-25 02:30:00,api,200,10,u1,a@x.io', '2026-10-25 03:30:00,api,200,10,u1,a@x.io']
    m, q = _run(tmp_path, lines, tz='Europe/Berlin')
    assert m['rows_quarantined'] == 2
    assert q.reason.str.startswith('nonexistent local time in Europe/Berlin').tolist() == [True, False]
    assert q.reason.iloc[1].startswith('ambiguous local time in Europe/Berlin') and q.row.tolist() == [3, 4]
    sig = pd.read_parquet(tmp_path / 'signals/signals.parquet')
    assert pd.Timestamp('2026-03-29T00:55Z') in set(sig.ts) and pd.Timestamp('2026-10-25T02:30Z') in set(sig.ts)  # 01:55 CET, 03:30 CET


def test_unsorted_rows_are_accepted_and_counted(tmp_path):
    m, q = _run(tmp_path, [OK[2], OK[0], OK[1]])
    assert m['rows_quarantined'] == 0 and m['rows_out_of_order'] == 1
    sig = pd.read_parquet(tmp_path / 'signals/signals.parquet')
    assert sig.groupby('monitor_id').ts.apply(lambda t: t.is_monotonic_increasing).all()


def test_malformed_jsonl_line(tmp_path):
    lines = [json.dumps({'ts': '2026-10-01T00:00:00Z', 'service': 'api', 'status': 200, 'latency_ms': 10, 'email': 'a@x.io'}),
             '{"ts": "2026-10-01T00:01:00Z", "service": ', '"just a string"']
    m, q = _run(tmp_path, lines, name='raw.jsonl', header='')
    assert q.row.tolist() == [2, 3] and q.reason.str.startswith('malformed JSON').all()


def test_pii_like_values_in_quarantine_are_redacted(tmp_path):
    m, q = _run(tmp_path, OK + ['2026-10-01T00:02:00Z,api,200,d@x.io,u4,d@x.io', '2026-10-01T00:03:00Z,api,200,10.1.2.3,u4,d@x.io'])
    assert q.value.tolist() == ['<redacted>', '<redacted>']


FATAL = [
    ('empty file', '', 'raw.csv: file is empty'),
    ('header only', HEADER, 'raw.csv: file has no data rows (header only)'),
]


@pytest.mark.parametrize('what,text,needle', FATAL, ids=[f[0] for f in FATAL])
def test_unusable_files_are_clear_errors(tmp_path, what, text, needle):
    (tmp_path / 'raw').mkdir()
    (tmp_path / 'raw/raw.csv').write_text(text)
    with pytest.raises(IngestError, match=re.escape(needle)): run_ingest(_params(), root=tmp_path)


def test_missing_file_and_columns_name_file_and_monitor(tmp_path):
    (tmp_path / 'raw').mkdir()
    with pytest.raises(IngestError, match='nope.csv: raw file of source'): run_ingest(_params('nope.csv'), root=tmp_path)
    (tmp_path / 'raw/raw.csv').write_text('ts,service,status\n' + '2026-10-01T00:00:00Z,api,200\n')
    with pytest.raises(IngestError, match=r"column\(s\) \['latency_ms'\] not in the file, needed by monitor\(s\) \['latency_p95'\]"):
        run_ingest(_params(), root=tmp_path)
    (tmp_path / 'raw/raw.csv').write_text(HEADER + OK[0] + '\n')
    with pytest.raises(IngestError, match=r"column\(s\) \['region'\].*needed by monitor\(s\) \['latency_p95'\]"):
        run_ingest(_params(filter="region == 'eu'"), root=tmp_path)


def test_cli_exits_2_with_the_file_name(tmp_path):
    raw = yaml.safe_load((ROOT / 'params.yaml').read_text())
    raw['ingest'] |= {'raw_dir': 'raw'}; raw['evaluate']['labels'] = None   # own raw folder: the sample's labels do not apply (params.yaml refuses them)
    (tmp_path / 'raw').mkdir(); (tmp_path / 'raw/requests.parquet').write_bytes(b'')
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(raw))
    p = subprocess.run([str(Path(sys.executable).parent / 'mlops-kit'), '--root', str(tmp_path), 'ingest'], capture_output=True, text=True)
    assert p.returncode == 2 and 'requests.parquet: file is empty' in p.stderr and 'Traceback' not in p.stderr, p.stderr


def test_failed_ingest_keeps_the_previous_output(tmp_path):
    "A failing run never leaves a half-written output in place of the last good one."
    _run(tmp_path, OK)
    before = (tmp_path / 'signals/signals.parquet').read_bytes()
    (tmp_path / 'raw/raw.csv').write_text('')
    with pytest.raises(IngestError): run_ingest(_params(), root=tmp_path)
    assert (tmp_path / 'signals/signals.parquet').read_bytes() == before
