"""Every console script answers --help and exits 0; a bad invocation exits non-zero; --debug goes before or after
a subcommand; a missing plugin library says where it was looked for."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.errors import DEBUG_ENV, EXIT_INTERNAL, EXIT_USAGE

MODULES = {"dannet-train": "train.cli", "dannet-export": "export.cli", "dannet-run": "runtime.cli",
           "dannet-bench": "benchmarks.cli"}


@pytest.mark.parametrize("prog, module", MODULES.items())
def test_help(prog: str, module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and f"usage: {prog}" in out.stdout


@pytest.mark.parametrize("module", MODULES.values())
def test_bad_invocation_fails(module: str) -> None:
    assert subprocess.run([sys.executable, "-m", module, "--no-such-flag"], capture_output=True).returncode != 0


@pytest.mark.parametrize("prog", ["dannet-train", "dannet-export", "dannet-bench"])
def test_a_command_without_its_subcommand_is_a_one_line_error(prog: str) -> None:
    """README: every command reports a problem as one line on stderr, argparse's errors too (no usage block)."""
    out = subprocess.run([sys.executable, "-m", MODULES[prog]], capture_output=True, text=True)
    assert out.returncode == EXIT_USAGE and out.stdout == ""
    assert out.stderr == f"{prog}: error: the following arguments are required: COMMAND (see {prog} --help)\n"


#: per command with subcommands: a subcommand's command line, and the module and function that run it
SUBCOMMANDS = {
    "dannet-train": (["info", "x.pth"], "train.cli", "cmd_info"),
    "dannet-export": (["onnx", "--checkpoint", "x.pth", "--out", "x.onnx"], "export.cli", "cmd_onnx"),
    "dannet-bench": (["latency", "--model", "x.onnx"], "benchmarks.latency", "main"),
}


@pytest.mark.parametrize("debug", ["before", "after", "absent"])
@pytest.mark.parametrize("prog", SUBCOMMANDS)
def test_debug_goes_before_or_after_the_subcommand(prog: str, debug: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """README: --debug works on every command, wherever it is typed: an internal error then shows its traceback
    (and without the flag it does not)."""
    command, module, body = SUBCOMMANDS[prog]

    def bug(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(importlib.import_module(module), body, bug)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    argv = {"before": ["--debug", *command], "after": [*command, "--debug"], "absent": command}[debug]
    assert importlib.import_module(MODULES[prog]).main(argv) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert f"{prog} {command[0]}: error: internal error: ZeroDivisionError: a bug" in err
    assert ("Traceback" in err) == (debug != "absent")


def test_a_missing_plugin_library_names_the_variable_and_the_paths_tried(tiny_graphs: dict[str, Path],
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """Outside the source checkout (here: a package whose folder has no build/), $DANNET_PLUGIN_LIB is the way to
    the plugin library; the error of a plugin-tail graph says so, with every path it tried."""
    from tensorrt_standin import StandIn

    import runtime.plugin_library
    from export.cli import main as export_main

    StandIn().install(monkeypatch)
    installed = tmp_path / "site-packages"
    monkeypatch.setattr(runtime.plugin_library, "_REPO", installed)
    monkeypatch.delenv("DANNET_PLUGIN_LIB", raising=False)
    argv = ["engine", "--onnx", str(tiny_graphs["plugin"]), "--out", str(tmp_path / "plugin.engine")]
    build = [installed / "build" / "plugins" / "libdannet_trt_plugins.so",
             installed / "build" / "libdannet_trt_plugins.so"]

    assert export_main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"tried $DANNET_PLUGIN_LIB (not set), {build[0]}, {build[1]}" in err
    assert "set DANNET_PLUGIN_LIB=/path/to/libdannet_trt_plugins.so" in err

    monkeypatch.setenv("DANNET_PLUGIN_LIB", str(tmp_path / "missing.so"))
    assert export_main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"tried $DANNET_PLUGIN_LIB={tmp_path / 'missing.so'}, {build[0]}" in err
    assert not (tmp_path / "plugin.engine").exists()
