from click.testing import CliRunner
from micro.cli import main


def test_debug_lists_its_commands():
    result = CliRunner().invoke(main, ["debug", "--help"])
    assert result.exit_code == 0
    for name in ("health", "logs", "stats", "trace"):
        assert name in result.output


def test_bad_since_is_a_usage_error():
    result = CliRunner().invoke(main, ["debug", "logs", "greeter", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "--since" in result.output
