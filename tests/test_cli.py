"""The `mlops-kit` parser is derived from the commands' signatures: each command's arguments keep their spelling,
destination, type, choices and default; main() calls the command with the parsed values; a bad declaration is refused
with the command and parameter named."""
from typing import Annotated

import pytest

from mlops_kit import cli
from mlops_kit.cli import Arg, ArgSpecError, arg_spec, build_parser, main

from conftest import ROOT


def sub(ap, name):
    return ap._subparsers._group_actions[0].choices[name]


def actions(ap, name) -> dict:
    return {a.dest: a for a in sub(ap, name)._actions}


def test_every_command_is_a_subcommand_with_its_docstring():
    ap = build_parser()
    assert set(ap._subparsers._group_actions[0].choices) == set(cli.COMMANDS)
    for name, f in cli.COMMANDS.items():
        assert sub(ap, name).description == f.__doc__
    assert arg_spec(cli.COMMANDS['sample']) == []


def test_each_command_keeps_its_flags_destinations_and_types():
    ap = build_parser()
    a = actions(ap, 'promote')
    assert (a['version'].option_strings, a['version'].type, a['version'].required) == (['--version'], int, True)
    f = actions(ap, 'feedback')
    assert f['monitor_id'].option_strings == ['--monitor'] and f['alert'].nargs == '?' and f['alert'].option_strings == []
    assert f['verdict'].choices == ['incident', 'not_anomaly', 'missed'] and f['verdict'].required
    assert actions(ap, 'maturity')['as_json'].option_strings == ['--json']
    r = actions(ap, 'retrain')
    assert (r['dry_run'].option_strings, r['dry_run'].default, r['dry_run'].const) == (['--dry-run'], False, True)
    t = actions(ap, 'team')
    assert t['auth_db'].option_strings == ['--auth-db'] and (t['port'].type, t['port'].default) == (int, 5000)
    assert t['role'].choices == ['viewer', 'engineer', 'releaser', 'admin'] and t['role'].default == 'engineer'
    assert actions(ap, 'runs')['n'].option_strings == ['-n'] and actions(ap, 'serve')['port'].default == 5001
    b = actions(ap, 'bench')
    assert (b['monitors'].nargs, b['monitors'].type, b['corpora'].metavar) == ('+', int, 'DIR')
    assert b['duration'].type is float and b['no_mlflow'].option_strings == ['--no-mlflow']
    assert '(default: 5000)' in sub(ap, 'team').format_help()                   # %(default)s comes from the signature
    assert vars(ap.parse_args(['runs', 'compare', 'a1', 'b2']))['run_ids'] == ['a1', 'b2']


def test_main_calls_the_command_with_the_parsed_values(monkeypatch):
    seen = {}

    def promote(params='params.yaml', root='.',
                version: Annotated[int | None, Arg('--version', required=True, help='v')] = None,
                reason: Annotated[str, Arg('--reason', help='r')] = 'none given'):
        "A stand-in for promote."
        seen.update(params=params, root=root, version=version, reason=reason)

    monkeypatch.setitem(cli.COMMANDS, 'promote', promote)
    assert main(['--root', '/nowhere', '--params', 'p.yaml', 'promote', '--version', '7']) == 0
    assert seen == {'params': 'p.yaml', 'root': '/nowhere', 'version': 7, 'reason': 'none given'}
    with pytest.raises(SystemExit) as e:                                       # argparse: a usage error is exit 2
        main(['promote', '--version', 'seven'])
    assert e.value.code == 2


def test_a_bad_declaration_fails_clearly_when_the_parser_is_built(monkeypatch):
    def broken(params='params.yaml', root='.', dry_run: Annotated[bool, Arg('dry-run', help='x')] = False):
        "Its flag lacks the dashes."

    monkeypatch.setitem(cli.COMMANDS, 'broken', broken)
    with pytest.raises(ArgSpecError, match=r"command broken, parameter 'dry_run': flags \('dry-run',\) must start with '-'"):
        build_parser()

    def undeclared(params='params.yaml', root='.', n: int = 3):
        "No Arg on n."

    monkeypatch.setitem(cli.COMMANDS, 'broken', undeclared)
    with pytest.raises(ArgSpecError, match=r"command undeclared, parameter 'n': no Arg\(\.\.\.\) in its annotation"):
        main(['sample'])                                                        # every command line builds the whole parser


def test_runs_compare_with_one_run_id_is_a_usage_error(capsys):
    "Not two run ids: exit 2 with what compare takes (before: a ValueError traceback and exit 1); nothing is read from MLflow first."
    assert main(['--root', str(ROOT), 'runs', 'compare', 'only-one']) == 2
    assert 'runs compare takes two run ids or none (the two latest), got 1' in capsys.readouterr().err


def test_bench_models_refuses_an_unknown_peer_before_anything_runs(tmp_path, capsys):
    "`--peers etss` (a typo): refused with the names it knows, before any window is read (before: skipped as 'not installed')."
    (tmp_path / 'params.yaml').write_text((ROOT / 'params.yaml').read_text())     # no windows here: nothing could run anyway
    rc, msg = main(['--root', str(tmp_path), 'bench', 'models', '--peers', 'ets,etss']), capsys.readouterr().err
    assert rc == 2 and "unknown peer(s) ['etss']; allowed: prophet, autoets, ets" in msg, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ['params.yaml']           # nothing written


def test_bench_detect_says_which_values_it_read_as_gaps(tmp_path, capsys):
    "A corpus CSV with 'n/a' and '' values: the run names the file, the count and the rows (before: NaN without a word); a file with no number at all is a CorpusError naming it."
    import numpy as np
    import pandas as pd
    from mlops_kit.bench_detect import CorpusError
    (tmp_path / 'params.yaml').write_text((ROOT / 'params.yaml').read_text())
    c = tmp_path / 'gappy'
    c.mkdir()
    ix = pd.date_range('2026-10-01', periods=3 * 288, freq='5min', tz='UTC')
    v = pd.Series(100 + np.random.default_rng(0).normal(0, 3, len(ix))).round(2).astype(str)
    v[[10, 20]] = ['n/a', '']
    pd.DataFrame({'timestamp': ix.strftime('%Y-%m-%dT%H:%M:%SZ'), 'value': v}).to_csv(c / 'a.csv', index=False)
    (c / 'labels.json').write_text('{}')
    assert main(['--root', str(tmp_path), 'bench', 'detect', str(c), '--no-mlflow']) == 0
    note = "gappy/a.csv: 2 of 864 values empty or not a number, read as gaps (row 12: 'n/a', row 22: '')"
    out = tmp_path / 'reports/bench/detect'
    assert note in capsys.readouterr().out and note in (out / 'summary.md').read_text()
    assert set(pd.read_csv(out / 'series.csv').not_numbers) == {2}
    (c / 'a.csv').write_text('timestamp,value\n2026-10-01T00:00:00Z,n/a\n2026-10-01T00:05:00Z,\n')
    with pytest.raises(CorpusError, match=r"gappy/a\.csv: no value is a number \(e\.g\. row 2: 'n/a'\)"):
        cli.bench('detect', root=tmp_path, corpora=[str(c)], no_mlflow=True)
    rc = main(['--root', str(tmp_path), 'bench', 'detect', str(c), '--no-mlflow'])             # on the command line: a user error,
    assert rc == 2 and "no value is a number" in capsys.readouterr().err                          # exit 2 and the message, no traceback
