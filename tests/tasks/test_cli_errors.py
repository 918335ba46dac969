"""The CLI error policy: one line and exit code 2 for user errors, tracebacks on request (tasks/cli_errors.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphcore.codegen.errors import GraphError
from graphcore.tasks.cli_errors import EXIT_USER_ERROR, UsageError, guarded, one_line, run_cli
from graphcore.tasks.traffic.cli import main as traffic_main

ROOT = Path(__file__).resolve().parents[2]


def failing(err):
    def main(argv):
        assert "--debug" not in argv          # the flag is the policy's, not the task parser's
        raise err
    return main


def test_user_error_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        run_cli(failing(UsageError("bad -k\n  use -k 5")), ["search"])
    assert done.value.code == EXIT_USER_ERROR == 2
    assert capsys.readouterr().err == "error: bad -k; use -k 5\n"


def test_debug_flag_or_environment_shows_the_error(monkeypatch):
    with pytest.raises(GraphError, match="broken graph"):
        run_cli(failing(GraphError("broken graph")), ["fit", "--debug"])
    monkeypatch.setenv("GRAPHCORE_DEBUG", "1")
    with pytest.raises(UsageError):
        guarded(failing(UsageError("x")))(["fit"])


def test_bugs_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_cli(failing(ZeroDivisionError("bug")), [])


def test_file_errors_name_the_file():
    assert one_line(FileNotFoundError(2, "No such file or directory", "data.npz")) == \
        "No such file or directory: data.npz"


def test_codec_errors_name_the_file_from_the_command_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_bytes("trainer:\n  max_epochs: 1\n# d\u00e9j\u00e0\n".encode("latin-1"))

    def main(argv):
        return Path(argv[1].partition("=")[2]).read_text(encoding="utf-8")

    with pytest.raises(SystemExit):
        run_cli(main, ["fit", f"--config={config}"])
    assert capsys.readouterr().err == (f"error: {config}, line 3: cannot decode the input as utf-8 at byte 28: "
                                       "save the file as UTF-8\n")


def run_module(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **(env or {})})


def test_a_task_program_prints_one_line_or_with_debug_raises(tmp_path):
    garbage = tmp_path / "run.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    out = run_module("tasks.traffic", "plot", f"--ckpt_path={garbage}", env={"GRAPHCORE_DEBUG": ""})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"error: {garbage} is not a readable checkpoint "
                                       "(UnpicklingError: invalid load key, 'n'.)"]
    with pytest.raises(UsageError, match="is not a readable checkpoint"):     # --debug: the exception itself
        traffic_main(["plot", f"--ckpt_path={garbage}", "--debug"])
