"""Prompt files (one per line or JSONL) and the session plan built from them; reading is
bounded in size and, for pipes and FIFOs, in idle time, so no input can fill memory or hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sluice.cli.command import UsageError
from sluice.cli.main import build_parser
from sluice.cli.prompts import plan_from_args
from sluice.engine import prompts
from sluice.engine.config import Config
from sluice.engine.prompts import PromptError, load_prompts, plan_sessions


def test_plain_lines_skip_blanks(tmp_path: Path):
    path = tmp_path / "p.txt"
    path.write_text("  first  \n\nsecond {not json}\n", encoding="utf-8")
    assert load_prompts(path) == ["first", "second {not json}"]


def test_jsonl_by_suffix_or_first_line(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a \\n b"}\n\n{"prompt": "c", "id": 7}\n', encoding="utf-8")
    assert load_prompts(path) == ["a \n b", "c"]
    path = tmp_path / "p.txt"
    path.write_text('{"prompt": "x"}\n', encoding="utf-8")
    assert load_prompts(path) == ["x"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no prompts (the file is empty)"),
        ('{"prompt": "a"}\n{oops\n', "p.jsonl:2: not valid JSON"),
        ('{"prompt": "a"}\n{"text": "b"}\n', "p.jsonl:2: each line must be an object"),
        ('["a"]\n', "p.jsonl:1: each line must be an object"),
    ],
)
def test_bad_files_name_the_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "p.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromptError, match=r"^--prompts ") as caught:
        load_prompts(path)
    assert message in str(caught.value)


def test_not_utf8(tmp_path: Path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PromptError, match="not UTF-8 text"):
        load_prompts(path)


def test_plan_interleaves_backends_and_reuses_prompts():
    plan = plan_sessions(["claude", "demo"], ["a", "b"], 3, demo_default=9)
    assert plan == [
        ("a", "claude"),
        ("a", "demo"),
        ("b", "claude"),
        ("b", "demo"),
        ("a", "claude"),
        ("a", "demo"),
    ]
    assert plan_sessions(["ollama"], ["a", "b"], None, 9) == [("a", "ollama"), ("b", "ollama")]
    assert plan_sessions(["demo"], None, None, 2) == [
        ("demo prompt 1", "demo"),
        ("demo prompt 2", "demo"),
    ]


# -- bounded reading: devices, FIFOs, stdin --------------------------------------------------


@pytest.mark.timeout(60)
def test_dev_zero_is_refused_at_the_size_bound_instead_of_filling_memory():
    # In a child capped at 2 GiB of address space: should the bound ever break, the child
    # fails with MemoryError instead of the machine running out of memory.
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31)); "
        "from sluice.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = ["run", "--headless", "--backend", "ollama", "--prompts", "/dev/zero"]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=50
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "sluice run: --prompts /dev/zero: larger than 16 MiB; give fewer prompts\n"
    )


def test_a_regular_file_over_the_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(prompts, "MAX_PROMPT_BYTES", 1024)
    path = tmp_path / "big.txt"
    path.write_text("x" * 1025)
    with pytest.raises(PromptError, match=r"big\.txt: larger than 1024 bytes; give fewer"):
        load_prompts(path)
    path.write_text("x" * 1024)
    assert load_prompts(path) == ["x" * 1024]


@pytest.mark.timeout(20)
def test_a_fifo_with_no_writer_is_given_up_on_after_the_idle_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(prompts, "READ_IDLE_S", 0.2)
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)
    with pytest.raises(PromptError) as caught:
        load_prompts(fifo)
    assert str(caught.value) == (
        f"--prompts {fifo}: no data for 0.2 s (a pipe or FIFO with no writer?)"
    )


@pytest.mark.timeout(20)
def test_a_fifo_with_a_writer_is_read_to_its_end(tmp_path: Path):
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w", encoding="utf-8") as handle:  # blocks until the reader opens
            handle.write("one\ntwo\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert load_prompts(fifo) == ["one", "two"]
    writer.join(5)


@pytest.mark.timeout(60)
def test_the_command_line_exits_2_on_a_fifo_with_no_writer_and_reads_stdin(tmp_path: Path):
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)
    code = (
        "import sys; from sluice.engine import prompts; prompts.READ_IDLE_S = 0.2; "
        "from sluice.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    base = [sys.executable, "-c", code, "--config", str(tmp_path / "none.toml")]
    (tmp_path / "none.toml").write_text('[consumer]\nkind = "null"\n')
    run = [*base, "run", "--headless", "--backend", "demo", "--sessions", "1", "--prompts"]
    stuck = subprocess.run([*run, str(fifo)], capture_output=True, text=True, timeout=30)
    assert stuck.returncode == 2 and stuck.stdout == ""
    assert stuck.stderr == (
        f"sluice run: --prompts {fifo}: no data for 0.2 s (a pipe or FIFO with no writer?)\n"
    )
    piped = subprocess.run(
        [*run, "-", "--json"], input="from stdin\n", capture_output=True, text=True, timeout=30
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["totals"]["sessions"] == 1


def test_a_directory_is_refused(tmp_path: Path):
    with pytest.raises(PromptError, match="is a directory, expected a text file"):
        load_prompts(tmp_path)


def test_the_plan_refuses_an_unusable_url_from_the_environment_before_anything_starts():
    argv = ["run", "--headless", "--backend", "ollama,demo", "--prompt", "hi", "--sessions", "1"]
    args = build_parser().parse_args(argv)
    with pytest.raises(UsageError) as caught:
        plan_from_args(args, Config(), {"OLLAMA_HOST": "http://me:SECRET@[bad"})
    assert str(caught.value).startswith("OLLAMA_HOST='http://***@[bad': not a valid URL")
    plan = plan_from_args(args, Config(), {"OLLAMA_HOST": "127.0.0.1:11434"})
    assert plan == [("hi", "ollama"), ("hi", "demo")]
