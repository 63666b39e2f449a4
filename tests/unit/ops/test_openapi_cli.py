"""`babyshield openapi --output`: a path it cannot write is a clear error, not a crash."""

from __future__ import annotations

from ops.cli import main


def test_output_in_a_missing_directory_is_a_clear_error(capsys, tmp_path):
    # Given an output path whose directory does not exist
    output = tmp_path / "no-such-dir" / "openapi.json"
    # When the document is written there
    code = main(["openapi", "--output", str(output)])
    # Then one line says what went wrong and what to do, and nothing is written
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot write {output}: No such file or directory" in err
    assert "next:" in err
    assert "unexpected failure" not in err
    assert not output.parent.exists()


def test_output_that_is_a_directory_is_a_clear_error(capsys, tmp_path):
    code = main(["openapi", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot write {tmp_path}" in err
    assert "unexpected failure" not in err


def test_the_default_output_is_this_checkouts_document_from_any_directory(
    tmp_path, monkeypatch, capsys
):
    """Run from a subdirectory (or anywhere), the default still names the committed
    file, not a docs/ folder under the working directory."""
    from pathlib import Path

    from ops import openapi

    checkout = Path(__file__).resolve().parents[3]
    assert checkout / "docs" / "openapi.json" == openapi.DEFAULT_OUTPUT
    # Written elsewhere here, so the test never rewrites the committed document
    target = tmp_path / "committed" / "openapi.json"
    target.parent.mkdir()
    monkeypatch.setattr(openapi, "DEFAULT_OUTPUT", target)
    monkeypatch.chdir(tmp_path)
    assert main(["openapi"]) == 0
    assert str(target) in capsys.readouterr().out
    assert target.read_text(encoding="utf-8") == openapi.render(openapi.openapi_document())
    assert not (tmp_path / "docs").exists()
