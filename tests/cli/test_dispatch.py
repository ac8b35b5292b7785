from open_clip_sparo.cli import main


def test_no_command_prints_usage_and_fails(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: sparo <command>") and captured.out == ""
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: sparo <command>")
