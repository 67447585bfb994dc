"""Messages reach the terminal as written: square brackets in them are text, not rich markup."""

from tests.test_cli import run_cli


def test_an_error_with_brackets_is_shown_whole(capsys, tmp_path):
    missing = tmp_path / "[missing]" / "model"
    code, out, err = run_cli(capsys, "explain", "hi", "--model", str(missing))
    assert code == 2 and out == ""
    assert "[missing]" in err and "Traceback" not in err
