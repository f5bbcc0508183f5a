import subprocess
import sys

import pytest

from gradum_cli.main import main

SUBCOMMANDS = ["score", "demo", "shards", "preview"]


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: gradum " + name in capsys.readouterr().out


def test_no_subcommand_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: gradum" in capsys.readouterr().out


def test_unknown_option_is_an_error():
    with pytest.raises(SystemExit) as exc:
        main(["preview", "x", "--no-such-flag"])
    assert exc.value.code == 2


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "gradum_cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("gradum ")
