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
