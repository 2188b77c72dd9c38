"""The ``citeqa`` command line, run as a subprocess (the venv's console script).

Every run sets PYTHONPROFILEIMPORTTIME so the test can see which modules the
process imported: a bad input must fail before torch (the model) is loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CITEQA = Path(sys.executable).with_name("citeqa")
HEAVY = ("torch", "sentence_transformers", "transformers", "faiss")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str  # without the import-time report
    imported: set[str]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    full_env.update({"PYTHONPROFILEIMPORTTIME": "1", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    proc = subprocess.run(
        [str(CITEQA), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    imported: set[str] = set()
    other: list[str] = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            imported.add(name.split(".")[0])
        else:
            other.append(line)
    return Run(proc.returncode, proc.stdout, "\n".join(other), imported)


def snapshot(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.name != ".lock"
    }


def assert_clean_error(result: Run, returncode: int, message: str) -> None:
    """Non-zero exit, no traceback, one error line (or argparse's usage + error)."""
    assert result.returncode == returncode, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if returncode == 2:  # argparse: usage lines, then "citeqa ...: error: ..."
        assert lines[0].startswith("usage: citeqa")
        assert lines[-1].startswith("citeqa") and ": error: " in lines[-1]
    else:
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("citeqa: error: ")
    assert message in lines[-1], lines[-1]
    assert result.stdout == ""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The subprocess's working folder: any default index/ would land here."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


# -- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["ask", "--help"], ["index", "--help"]])
def test_help_is_light(work: Path, args: list[str]) -> None:
    result = run_cli(*args, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: citeqa")
    assert "citeqa" in result.imported  # the report works, so absences below mean something
    for module in HEAVY:
        assert module not in result.imported, f"--help imported {module}"
    assert list(work.iterdir()) == []


def test_help_lists_commands(work: Path) -> None:
    out = run_cli("--help", cwd=work).stdout
    for command in ("index", "ask", "serve", "eval"):
        assert command in out


def test_no_command_is_a_usage_error(work: Path) -> None:
    result = run_cli(cwd=work)
    assert result.returncode == 2
    assert "usage: citeqa" in result.stderr and "Traceback" not in result.stderr


# -- bad input fails fast, cleanly, and writes nothing ---------------------------------------


def _corpus(tmp_path: Path, kind: str) -> str:
    root = tmp_path / "input"
    root.mkdir(exist_ok=True)
    if kind == "latin1":
        (root / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
        return str(root / "latin1.txt")
    if kind == "empty-folder":
        (root / "empty").mkdir()
        (root / "empty" / "notes.odt").write_bytes(b"PK\x03\x04")
        return str(root / "empty")
    if kind == "empty-file":
        (root / "blank.md").write_text("  \n\n")
        return str(root / "blank.md")
    if kind == "nul":
        (root / "nul.txt").write_bytes(b"text\x00text")
        return str(root / "nul.txt")
    return str(root / "missing")


@pytest.mark.parametrize(
    "kind, message",
    [
        ("latin1", "latin1.txt is not UTF-8 text (invalid byte at offset 3)"),
        ("empty-folder", "holds no documents (.txt, .md, .pdf, .html"),
        ("empty-file", "blank.md is empty"),
        ("nul", "contains NUL bytes"),
        ("missing", "missing does not exist"),
    ],
)
def test_index_rejects_bad_documents_before_the_model_loads(
    work: Path, tmp_path: Path, kind: str, message: str
) -> None:
    path = _corpus(tmp_path, kind)
    index_dir = tmp_path / "idx"
    result = run_cli("index", path, "--index-dir", str(index_dir), cwd=work)
    assert_clean_error(result, 1, message)
    assert not index_dir.exists()
    assert list(work.iterdir()) == []
    for module in HEAVY:
        assert module not in result.imported


@pytest.mark.parametrize(
    "args, returncode, message",
    [
        (["ask", ""], 1, "the question is empty; ask something"),
        (["ask", "  \t "], 1, "the question is empty"),
        (["ask", "?!"], 1, "the question has no letters or digits"),
        (["eval", "q.jsonl", "--modes", "hybrid,foo"], 2, "unknown mode 'foo'"),
        (["ask", "x" * 2001], 1, "the question is 2001 characters; the limit is 2000"),
        (["ask", "why?", "--top-k", "0"], 2, "--top-k must be 1..20, got 0"),
        (["ask", "why?", "--top-k", "21"], 2, "--top-k must be 1..20, got 21"),
        (["ask", "why?", "--top-k", "many"], 2, "--top-k must be an integer, got 'many'"),
        (["ask", "why?", "--mode", "fuzzy"], 2, "invalid choice: 'fuzzy'"),
        (["index", "seeds", "--max-tokens", "8"], 2, "--max-tokens must be 16..8192, got 8"),
        (["index", "seeds", "--overlap-sentences", "17"], 2, "got 17"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        # Path("") is ".": an unset "$DOCS" must not index the current folder
        (["index", "seeds", ""], 2, "argument PATH: an empty path (an unset variable?)"),
        (["eval", " "], 2, "argument questions: an empty path"),
        (
            ["eval", "q.jsonl", "--json", "out/m.json", "--report", "out/../out/m.json"],
            2,
            "--json and --report name the same file (out/m.json); give each its own",
        ),
        (["eval", "./q.jsonl", "--report", "q.jsonl"], 2, "--report q.jsonl is the question set"),
    ],
)
def test_bad_arguments_fail_fast(
    work: Path, tmp_path: Path, args: list[str], returncode: int, message: str
) -> None:
    index_dir = tmp_path / "idx"
    result = run_cli(*args, "--index-dir", str(index_dir), cwd=work)
    assert_clean_error(result, returncode, message)
    assert not index_dir.exists()
    assert list(work.iterdir()) == []
    for module in HEAVY:
        assert module not in result.imported


def test_version(work: Path) -> None:
    result = run_cli("--version", cwd=work)
    assert result.returncode == 0
    assert result.stdout.startswith("citeqa ") and result.stdout.strip() != "citeqa unknown"
    for module in HEAVY:
        assert module not in result.imported


@pytest.mark.parametrize("current", [None, "garbage\n"])
def test_ask_without_usable_index_fails_before_the_model_loads(
    work: Path, tmp_path: Path, current: str | None
) -> None:
    # An unusable model path is a tripwire: touching the model reports it instead.
    index_dir = tmp_path / "idx"
    if current is not None:
        index_dir.mkdir()
        (index_dir / "CURRENT").write_text(current)
    before = snapshot(tmp_path)
    result = run_cli(
        "ask", "What happened?", "--index-dir", str(index_dir), cwd=work,
        env={"CITEQA_MODEL_PATH": str(tmp_path / "no-model")},
    )
    expected = "no index at" if current is None else "rebuild it with: citeqa index"
    assert_clean_error(result, 1, expected)
    assert snapshot(tmp_path) == before


def test_a_question_that_is_not_utf8_is_a_clean_error(work: Path, tmp_path: Path) -> None:
    # a Latin-1 terminal's "\xff" reaches Python as a lone surrogate
    result = run_cli(
        "ask", "who is \udcff?", "--index-dir", str(tmp_path / "idx"), cwd=work,
        env={"PYTHONIOENCODING": "utf-8:surrogateescape"},
    )
    assert_clean_error(result, 1, "the question is not valid UTF-8 text")


HASHING = {"CITEQA_EMBEDDER": "hashing"}


def _two_documents(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "alpha.txt").write_text("Otters swim in the river. They eat fish.\n")
    (corpus / "beta.txt").write_text("Herons wait in the shallows. They eat frogs.\n")
    return corpus


def test_index_names_the_documents_a_rebuild_removes(work: Path, tmp_path: Path) -> None:
    corpus = _two_documents(tmp_path)
    index_dir = tmp_path / "idx"
    first = run_cli("index", str(corpus), "--index-dir", str(index_dir), cwd=work, env=HASHING)
    assert first.returncode == 0, first.stderr
    assert "note" not in first.stderr
    (corpus / "beta.txt").unlink()
    second = run_cli("index", str(corpus), "--index-dir", str(index_dir), cwd=work, env=HASHING)
    assert second.returncode == 0, second.stderr
    assert "indexed 1 documents" in second.stdout
    assert f"citeqa: note: removed 1 documents not under {corpus}: beta" in second.stderr


def test_ask_shows_control_characters_from_documents_as_escapes(
    work: Path, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bells.md").write_text(
        "# Bells\n\n## Tower\x1b]0;pwned\x07 history\n\nBells ring at noon every day.\n"
        "The tower was built of \x1b[31mstone\x9b2J in\r\n1850.\n"
    )
    (corpus / "bells.md.meta.json").write_text(json.dumps({"title": "Line1\nLine2\x1b[31mRED"}))
    index_dir = tmp_path / "idx"
    built = run_cli("index", str(corpus), "--index-dir", str(index_dir), cwd=work, env=HASHING)
    assert built.returncode == 0, built.stderr
    ask = ("ask", "What was the tower built of?", "--index-dir", str(index_dir), "--top-k", "1")
    out = run_cli(*ask, cwd=work, env=HASHING).stdout
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", out), repr(out)
    lines = out.rstrip("\n").split("\n")
    # the learned stage's short answer, when it marks one, is a line of its own
    lines = [line for line in lines if not line.startswith("Short answer: ")]
    answer_line_1, answer_line_2, _, citation, passage = lines
    # the answer keeps its line break (CRLF printed as one newline), the rest is escaped
    assert answer_line_1 == "The tower was built of \\x1b[31mstone\\x9b2J in"
    assert answer_line_2 == "1850. [1]"
    assert citation.startswith("[1] Line1\\nLine2\\x1b[31mRED › Tower\\x1b]0;pwned\\x07 history  (")
    assert passage.endswith("built of \\x1b[31mstone\\x9b2J in 1850.")
    # --json: the same JSON, with DEL and C1 escaped too (json escapes C0 itself)
    raw = run_cli(*ask, "--json", cwd=work, env=HASHING).stdout
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", raw), repr(raw)
    citation_json = json.loads(raw)["citations"][0]
    assert citation_json["title"] == "Line1\nLine2\x1b[31mRED"
    assert "\x1b[31mstone\x9b2J in\r\n1850." in citation_json["text"]


def test_index_notes_the_files_it_skips_in_a_folder(work: Path, tmp_path: Path) -> None:
    corpus = _two_documents(tmp_path)
    args = ("index", str(corpus), "--index-dir", str(tmp_path / "idx"))

    def notes() -> list[str]:
        result = run_cli(*args, cwd=work, env=HASHING)
        assert result.returncode == 0, result.stderr
        assert "2 documents" in result.stdout
        return [line for line in result.stderr.splitlines() if "citeqa: note:" in line]

    assert notes() == []  # nothing skipped, nothing said
    for name in (".c.txt", ".hidden/b.txt", "d.odt", "e.rst", "f.markdown", "g\x1b[31m.rtf"):
        (corpus / name).parent.mkdir(exist_ok=True)
        (corpus / name).write_text("Skipped text.\n")
    assert notes() == [
        "citeqa: note: skipped 6 files that are not .txt/.md/.pdf/.html/.htm/.xhtml/.docx or "
        f"are hidden: {corpus}/.c.txt, {corpus}/.hidden/b.txt, {corpus}/d.odt, {corpus}/e.rst, "
        f"{corpus}/f.markdown, …"
    ]
    (corpus / "d.odt").unlink()
    [note] = notes()
    assert note.startswith("citeqa: note: skipped 5 files")
    assert note.endswith(f"{corpus}/f.markdown, {corpus}/g\\x1b[31m.rtf")  # escaped


def test_a_model_folder_of_ones_own_is_checked_by_loading_it(
    work: Path, tmp_path: Path
) -> None:
    """Two folders of one name may hold two models, so with CITEQA_MODEL_PATH set an
    unchanged corpus is judged by index_corpus, which loads the model, not by name."""
    corpus = _two_documents(tmp_path)
    index_dir = tmp_path / "idx"
    args = ("index", str(corpus), "--index-dir", str(index_dir))
    assert run_cli(*args, cwd=work, env=HASHING).returncode == 0
    bundled = run_cli(*args, cwd=work, env=HASHING)
    assert "is up to date" in bundled.stdout  # known by name: the model is not loaded
    own = run_cli(*args, cwd=work, env={**HASHING, "CITEQA_MODEL_PATH": str(tmp_path / "m")})
    assert own.returncode == 0, own.stderr
    assert "unchanged, nothing written" in own.stdout and "0 texts embedded" in own.stdout


@pytest.mark.parametrize(
    "under, message",
    [
        ("", "the index location {blocked} is a file, not a folder"),
        ("sub", "cannot make the index folder {blocked}/sub: {blocked} is a file, not a folder"),
    ],
)
def test_an_index_dir_that_is_a_file_is_refused_before_the_model_loads(
    work: Path, tmp_path: Path, under: str, message: str
) -> None:
    corpus = _two_documents(tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder\n")
    # An unusable model path is a tripwire: touching the model reports it instead.
    result = run_cli(
        "index", str(corpus), "--index-dir", str(blocked / under), cwd=work,
        env={"CITEQA_MODEL_PATH": str(tmp_path / "no-model")},
    )
    assert_clean_error(result, 1, message.format(blocked=blocked))
    assert blocked.read_text() == "not a folder\n"


def test_bad_environment_variable_is_a_clean_error(work: Path) -> None:
    result = run_cli("ask", "What happened?", cwd=work, env={"CITEQA_THREADS": "many"})
    assert_clean_error(result, 1, "CITEQA_THREADS")


def test_an_empty_index_dir_is_refused(work: Path) -> None:
    seeds = str(Path(__file__).resolve().parents[1] / "seeds")
    result = run_cli("index", seeds, "--index-dir", "", cwd=work)
    assert_clean_error(result, 2, "argument --index-dir: an empty path")
    result = run_cli("index", seeds, cwd=work, env={"CITEQA_INDEX_DIR": ""})
    assert_clean_error(result, 1, "CITEQA_INDEX_DIR")
    assert list(work.iterdir()) == []  # nothing written into the current folder


def test_unusable_model_path_is_a_clean_error(work: Path, tmp_path: Path) -> None:
    result = run_cli(
        "index", str(Path(__file__).resolve().parents[1] / "seeds"),
        "--index-dir", str(tmp_path / "idx"), cwd=work,
        env={"CITEQA_MODEL_PATH": str(tmp_path / "no-model")},
    )
    assert_clean_error(result, 1, "is not a sentence-transformers model directory")
    assert "torch" not in result.imported


@pytest.mark.parametrize("modules", [None, "garbage"])
def test_a_broken_model_folder_on_torch_is_a_clean_error(
    work: Path, tmp_path: Path, modules: str | None
) -> None:
    model = tmp_path / "fakemodel"
    model.mkdir()
    (model / "config.json").write_text("{}")
    if modules is not None:
        (model / "modules.json").write_text(modules)
    result = run_cli(
        "index", str(_two_documents(tmp_path)), "--index-dir", str(tmp_path / "idx"), cwd=work,
        env={"CITEQA_BACKEND": "torch", "CITEQA_MODEL_PATH": str(model)},
    )
    assert_clean_error(result, 1, f"{model} is not a usable sentence-transformers model (")
    assert not (tmp_path / "idx").exists()


# -- with the bundled model -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_index_unchanged_corpus_reports_nothing_written(
    work: Path, tmp_path: Path, real_index: Path
) -> None:
    index_dir = tmp_path / "index"
    shutil.copytree(real_index / "index", index_dir)
    before = snapshot(index_dir)
    result = run_cli("index", str(real_index / "seeds"), "--index-dir", str(index_dir), cwd=work)
    assert result.returncode == 0, result.stderr
    assert "1 documents" in result.stdout
    assert "nothing written" in result.stdout
    assert snapshot(index_dir) == before
    assert "torch" not in result.imported  # an up-to-date index needs no model


@pytest.fixture(scope="module")
def mismatched_ask(tmp_path_factory: pytest.TempPathFactory, hashing_index_dir: Path):  # type: ignore[no-untyped-def]
    """One ``citeqa ask`` (bundled model) against an index built with HashingEmbedder."""
    root = tmp_path_factory.mktemp("mismatch")
    index_dir = root / "index"
    shutil.copytree(hashing_index_dir, index_dir)
    (root / "cwd").mkdir()
    before = snapshot(index_dir)
    result = run_cli("ask", "What happened?", "--index-dir", str(index_dir), cwd=root / "cwd")
    return index_dir, before, result


@pytest.mark.integration
@pytest.mark.slow
def test_ask_with_mismatched_index_is_refused(mismatched_ask) -> None:  # type: ignore[no-untyped-def]
    index_dir, before, result = mismatched_ask
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("citeqa: error:")]
    assert len(errors) == 1
    assert "hashing-test-embedder" in errors[0]
    assert f"rebuild it with: citeqa index --index-dir {index_dir}" in errors[0]
    assert snapshot(index_dir) == before


@pytest.mark.integration
@pytest.mark.slow
def test_error_after_model_load_is_the_only_stderr_line(mismatched_ask) -> None:  # type: ignore[no-untyped-def]
    _, _, result = mismatched_ask
    assert_clean_error(result, 1, "rebuild it with")


def test_an_interrupt_while_a_library_loads_is_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from citeqa import cli

    def interrupted_import(args: object) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:  # what onnxruntime's loader turns it into
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(cli, "cmd_ask", interrupted_import)
    assert cli.main(["ask", "why?"]) == 130
    assert capsys.readouterr().err == "citeqa: interrupted\n"

    def broken_import(args: object) -> int:
        raise ImportError("no module named frobnicate")

    monkeypatch.setattr(cli, "cmd_ask", broken_import)
    with pytest.raises(ImportError, match="frobnicate"):
        cli.main(["ask", "why?"])


def test_ask_about_one_document_of_a_folder_of_pdfs(work: Path, tmp_path: Path) -> None:
    from _formats import make_pdf

    corpus = tmp_path / "reports"
    corpus.mkdir()
    (corpus / "otters.pdf").write_bytes(
        make_pdf([["Otters swim in the river."], ["Otters eat fish and frogs."]], title="Otters")
    )
    (corpus / "herons.pdf").write_bytes(
        make_pdf([["Herons wait in the shallows."], ["Herons eat fish and frogs."]])
    )
    index_dir = tmp_path / "idx"
    built = run_cli("index", str(corpus), "--index-dir", str(index_dir), cwd=work, env=HASHING)
    assert built.returncode == 0, built.stderr
    assert "indexed 2 documents" in built.stdout
    ask = ("ask", "What do they eat?", "--index-dir", str(index_dir), "--json")
    for doc in ("otters", "herons"):
        out = run_cli(*ask, "--doc", doc, cwd=work, env=HASHING)
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert {c["doc_id"] for c in answer["citations"]} == {doc}
        assert {c["page"] for c in answer["citations"]} <= {1, 2}
        assert all(s["page"] == 2 for s in answer["sentences"] if "eat" in s["text"])
    text = run_cli(*ask[:-1], "--doc", "otters", cwd=work, env=HASHING).stdout
    assert "(otters p. " in text
    unknown = run_cli(*ask, "--doc", "owls", cwd=work, env=HASHING)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("citeqa: error: no document with id 'owls' in the index")


def test_index_refuses_a_folder_with_a_bad_pdf_and_writes_nothing(
    work: Path, tmp_path: Path
) -> None:
    from _formats import make_scanned_pdf

    corpus = _two_documents(tmp_path)
    (corpus / "scan.pdf").write_bytes(make_scanned_pdf())
    index_dir = tmp_path / "idx"
    out = run_cli("index", str(corpus), "--index-dir", str(index_dir), cwd=work, env=HASHING)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"citeqa: error: {corpus / 'scan.pdf'} has no text layer; OCR is not supported "
        "(a scan? run it through OCR software first)"
    ]
    assert not index_dir.exists()


def test_compact_merges_the_segments_and_keeps_the_answers(work: Path, tmp_path: Path) -> None:
    corpus = _two_documents(tmp_path)
    (corpus / "delta.txt").write_text("Beavers build dams. They eat bark.\n")
    index_dir = tmp_path / "idx"
    args = ("--index-dir", str(index_dir))
    assert run_cli("index", str(corpus), *args, cwd=work, env=HASHING).returncode == 0
    (corpus / "gamma.txt").write_text("Kingfishers dive for fish. They nest in banks.\n")
    (corpus / "alpha.txt").write_text("Otters swim in the lake now. They eat fish.\n")
    assert run_cli("index", str(corpus), *args, cwd=work, env=HASHING).returncode == 0
    manifest = json.loads((index_dir / "generations" / (index_dir / "CURRENT").read_text().strip()
                           / "manifest.json").read_text())
    assert len(manifest["segments"]) == 2 and manifest["segments"][0]["deleted"] == ["alpha"]
    question = ("ask", "What do otters eat?", "--json", *args)
    before = json.loads(run_cli(*question, cwd=work, env=HASHING).stdout)

    merged = run_cli("compact", *args, cwd=work, env=HASHING)
    assert merged.returncode == 0, merged.stderr
    assert "merged 2 segments into 1" in merged.stdout
    assert "1 deleted chunks dropped" in merged.stdout
    assert not {"torch", "sentence_transformers"} & merged.imported  # no model is loaded
    after = json.loads(run_cli(*question, cwd=work, env=HASHING).stdout)
    assert {**after, "index_version": ""} == {**before, "index_version": ""}
    again = run_cli("compact", *args, cwd=work, env=HASHING)
    assert "has 1 segments and nothing to merge: nothing written" in again.stdout


def test_compact_without_an_index_is_a_clean_error(work: Path, tmp_path: Path) -> None:
    result = run_cli("compact", "--index-dir", str(tmp_path / "none"), cwd=work)
    assert result.returncode == 1
    assert result.stderr.startswith("citeqa: error: no index at")
