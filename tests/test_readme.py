"""The README's examples hold against the code: every `recqa ...` line in its bash blocks
parses with the real command, every `make <target>` it names exists, and every curl body is a
valid request for its endpoint.

A `recqa` line runs through the real `recqa` entry point with the first real work cut off:
reading an input, opening the warehouse, starting a pipeline or the server, or calling a
service raises `ReachedWork`. Reaching it means every flag was accepted (by argparse and by
whatever checks the command makes before working); an argparse error or a failing exit code
before it fails the test with the command's own message. Nothing is read, built or served.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PLACEHOLDER = "..."  # the README's "more flags here"


def bash_lines(text: str) -> list[str]:
    """The command lines of the fenced bash blocks, continuation lines joined, comments kept."""
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def commands(program: str) -> list[list[str]]:
    """Each bash line running `program` (after any VAR=value prefixes), as words without comments."""
    found = []
    for line in bash_lines(README):
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        if words and Path(words[0]).name == program:
            found.append(words)
    return found


RECQA_LINES = [words[1:] for words in commands("recqa")]
CURL_LINES = commands("curl")


class ReachedWork(BaseException):
    """The command got past its argument checks to its first real work (BaseException: no
    `except Exception` in the command swallows it)."""


@pytest.fixture
def no_work(monkeypatch):
    """Cut every path a recqa command takes into real work."""
    import lance
    import lancedb
    import urllib.request
    from apache_beam import pipeline
    from apache_beam.io.filesystems import FileSystems

    import cli.main
    from cli.main import DEFAULT_ENV
    from encoding import sentence_transformer as encoders
    from pipelines import options

    def stop(*args, **kwargs):
        raise ReachedWork

    for name in ("match", "open", "create", "exists"):
        monkeypatch.setattr(FileSystems, name, stop)
    monkeypatch.setattr(pipeline.Pipeline, "__init__", stop)
    for module, name in ((lance, "dataset"), (lance, "write_dataset"), (lancedb, "connect"),
                         (urllib.request, "urlopen"), (os, "execve"), (options, "read_config"),
                         (encoders, "resolve_model_path")):  # --config: a file's content, not syntax
        monkeypatch.setattr(module, name, stop)
    monkeypatch.setattr(cli.main, "port_problem", lambda host, port: None)  # the README's port may be busy here
    for key, value in DEFAULT_ENV.items():  # recqa sets these; restore them afterwards
        monkeypatch.setenv(key, os.environ.get(key, value))


def test_the_readme_has_examples_of_each_kind():
    assert len(RECQA_LINES) >= 10 and CURL_LINES and make_targets_named()


@pytest.mark.parametrize("argv", RECQA_LINES, ids=[" ".join(argv)[:70] for argv in RECQA_LINES])
def test_each_recqa_line_is_accepted_by_its_command(argv, no_work, monkeypatch):
    from cli.main import main

    monkeypatch.chdir(ROOT)  # the README's commands run from the project folder (data/ is relative to it)
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main([word for word in argv if word != PLACEHOLDER])
    except ReachedWork:
        return
    except SystemExit as exit_:  # argparse's way of refusing a flag
        pytest.fail(f"recqa {' '.join(argv)} exited {exit_.code}: {err.getvalue().strip()}")
    assert code == 0, f"recqa {' '.join(argv)} returned {code}: {err.getvalue().strip()}"


def make_targets_named() -> set[str]:
    """Targets of `make` lines in bash blocks and of `make ...` code spans anywhere in the README."""
    targets = {words[1] for words in commands("make") if len(words) > 1}
    targets |= set(re.findall(r"`make ([A-Za-z][\w.-]*)", README))
    return {target for target in targets if "=" not in target}


def test_every_make_target_named_exists_in_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", makefile, flags=re.M))
    assert make_targets_named() - defined == set()


def routes() -> dict[str, str]:
    """{route: request model name} from the service's `@bentoml.api(route=..., input_spec=...)`, read without importing it."""
    tree = ast.parse((ROOT / "serving" / "service.py").read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "api":
            keywords = {k.arg: k.value for k in node.keywords}
            if "route" in keywords and "input_spec" in keywords:
                found[ast.literal_eval(keywords["route"])] = keywords["input_spec"].id
    return found


@pytest.mark.parametrize("words", CURL_LINES, ids=[w for words in CURL_LINES for w in words if w.startswith("http")])
def test_each_curl_body_is_a_valid_request_for_its_endpoint(words):
    from serving import api

    url = next(word for word in words if word.startswith("http"))
    path = "/" + url.split("/", 3)[3]
    assert words.count("-d") == 1, "one JSON body per example"
    body = json.loads(words[words.index("-d") + 1])
    model = getattr(api, routes()[path])  # a path the service does not route is a KeyError naming it
    model.model_validate(body)
