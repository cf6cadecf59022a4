"""Prompt files (one per line or JSONL) and the session plan built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

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
