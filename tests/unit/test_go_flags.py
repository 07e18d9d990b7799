"""go-livepeer's start lines: every flag of its starter is accepted by `lpnode livepeer` and the role commands,
with its effect where lpnode has one and one warning line where it has none; an unknown flag names the closest.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import pytest

from lpnode.cli import build_parser, main
from lpnode.errors import ConfigError
from lpnode.gateway.command import settings_from_args as gateway_settings
from lpnode.go_flags import BOOL, DURATION, FLAGS, FLOAT, INT, ROLE_COMMANDS, role_args
from lpnode.go_starter import start_line

SAMPLE = {BOOL: "true", INT: "1", FLOAT: "0.5", DURATION: "1s"}
ROLE_LINE = {"orchestrator": ["-orchestrator", "-aiWorker"], "gateway": ["-gateway"], "worker": ["-aiWorker"],
             "signer": ["-remoteSigner"]}  # fmt: skip
STARTER_ONLY = {"config", "version", "redeemer", "remoteSigner", "transcoder", "orchestrator", "gateway",
                "broadcaster", "aiWorker"}  # fmt: skip


def sample(name: str) -> str:
    return "6" if name == "v" else SAMPLE.get(FLAGS[name].kind, "x")


def role_parser(role: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[role]
    return parser


@pytest.mark.parametrize("role", ROLE_COMMANDS)
def test_every_go_flag_is_taken_with_its_effect_or_one_warning(role: str) -> None:
    for name in sorted(set(FLAGS) - STARTER_ONLY):
        line = start_line([*ROLE_LINE[role], f"-{name}={sample(name)}"], {})
        canonical = "dataDir" if name == "datadir" else name
        passed = [a for a in line.argv if a.split("=")[0] == f"-{canonical}"]
        if role in FLAGS[name].roles:
            assert passed == [f"-{canonical}={sample(name)}"] and not line.warnings, name
            build_parser().parse_args(line.argv)  # the role command's parser reads it
        else:
            assert not passed, name
            assert len(line.warnings) == 1 and line.warnings[0].startswith(f"-{name}: ignored: "), line.warnings


@pytest.mark.parametrize("role", ROLE_COMMANDS)
def test_every_go_spelling_of_a_role_command_is_in_the_table(role: str) -> None:
    """A go flag the role's parser reads must be marked as taking effect there, or role_args would drop it."""
    spellings = {s[1:] for s in role_parser(role)._option_string_actions if s[:1] == "-" and s[1:2] != "-"}
    spellings -= {"h"}
    assert spellings <= set(FLAGS)
    assert sorted(n for n in spellings if role not in FLAGS[n].roles) == []


@pytest.mark.parametrize(
    ("tokens", "value"),
    [
        (["-monitor"], "true"), (["--monitor"], "true"), (["-monitor=false"], "false"), (["-monitor=0"], "false"),
        (["-monitor=T"], "true"), (["-monitor=FALSE"], "false"), (["--monitor=1"], "true"), (["-monitor=f"], "false"),
    ],
)  # fmt: skip
def test_bool_flags_take_go_forms(tokens: list[str], value: str) -> None:
    line = start_line(["-gateway", *tokens], {})
    assert f"-monitor={value}" in line.argv


def test_a_bool_flag_with_a_bad_value_is_refused_in_go_words() -> None:
    with pytest.raises(ConfigError, match=r"^invalid value 'yes please' for flag -monitor: expected a Go bool$"):
        start_line(["-gateway", "-monitor=yes please"], {})


def test_a_bool_flag_never_takes_the_next_entry_as_its_value() -> None:
    with pytest.raises(ConfigError, match=r"^unexpected argument 'false'"):
        start_line(["-gateway", "-monitor", "false"], {})


def test_value_flags_take_the_next_entry_or_an_inline_value() -> None:
    line = start_line(["-gateway", "-orchAddr", "o1:8935", "--httpAddr=127.0.0.1:9935", "-discoveryTimeout=2s"], {})
    assert line.argv[:3] == ["gateway", "-orchAddr=o1:8935", "-httpAddr=127.0.0.1:9935"]
    with pytest.raises(ConfigError, match=r"^flag needs an argument: -orchAddr$"):
        start_line(["-gateway", "-orchAddr"], {})
    with pytest.raises(ConfigError, match=r"^invalid value '2 seconds' for flag -discoveryTimeout"):
        start_line(["-gateway", "-discoveryTimeout", "2 seconds"], {})


@pytest.mark.parametrize(
    ("typed", "closest"),
    [("-serviceAdr", "-serviceAddr"), ("--serviceAdr", "-serviceAddr"), ("-aimodels", "-aiModels"),
     ("-orchestartor", "-orchestrator"), ("-aiModelDir", "-aiModelsDir")],
)  # fmt: skip
def test_an_unknown_flag_names_the_closest_and_exits_2(
    typed: str, closest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["livepeer", "-orchestrator", typed, "x"]) == 2
    name = typed.lstrip("-")
    assert capsys.readouterr().err == f"lpnode: error: unknown flag -{name} (did you mean {closest}?)\n"


def test_an_unknown_flag_on_a_role_command_names_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["orchestrator", "-aiModels", "x.json", "-serviceAdr", "127.0.0.1:8935"]) == 2
    assert capsys.readouterr().err == "lpnode: error: unknown flag -serviceAdr (did you mean -serviceAddr?)\n"


def test_a_flag_with_no_meaning_warns_once_without_its_value() -> None:
    line = start_line(
        ["-orchestrator", "-aiWorker", "-transcoder", "-kafkaPassword", "s3cret", "-kafkaPassword=s3cret2",
         "-orchAddr", "o:1", "-maxSessions", "10"], {},
    )  # fmt: skip
    assert line.warnings == [
        "-transcoder: ignored: lpnode does not transcode video",
        "-kafkaPassword: ignored: lpnode reports through /metrics (Prometheus) and its log only",
        "-orchAddr: ignored: only gateways, workers and signers use it; this node is an orchestrator",
        "-maxSessions: ignored: AI capacity comes from aiModels.json (capacity) and the runner slots",
    ]
    assert not any("s3cret" in part for part in [*line.argv, *line.warnings])


def test_a_role_command_drops_and_names_the_go_flags_it_has_no_use_for() -> None:
    argv, warnings = role_args("gateway", ["--orchAddr", "o:1", "-serviceAddr", "x:1", "--timeout", "30", "-v", "6"])
    assert argv == ["-orchAddr=o:1", "--timeout", "30", "-v=6"]
    assert warnings == ["-serviceAddr: ignored: only orchestrators use it; this node is a gateway"]


@pytest.mark.parametrize(
    ("flags", "command"),
    [
        (["-orchestrator", "-aiWorker", "-gateway"], "orchestrator"),
        (["-gateway", "-aiWorker"], "worker"),
        (["-broadcaster"], "gateway"),
        (["-gateway=false", "-broadcaster=true"], "gateway"),
        (["-orchestrator", "-transcoder"], "orchestrator"),
    ],
)
def test_the_role_follows_go_livepeers_precedence(flags: list[str], command: str) -> None:
    assert start_line(flags, {}).argv[0] == command


def test_an_orchestrator_runs_its_own_runners_only_with_ai_worker() -> None:
    assert start_line(["-orchestrator"], {}).argv[-1] == "-aiWorker=false"
    assert start_line(["-orchestrator", "-aiWorker"], {}).argv[-1] == "-aiWorker=true"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-redeemer", "-orchestrator"], "-redeemer: lpnode has no ticket redemption service"),
        (["-transcoder"], "-transcoder: lpnode does not transcode video"),
        (["-monitor", "-v", "6"], "no role given: add -orchestrator, -gateway or -aiWorker"),
    ],
)
def test_roles_lpnode_does_not_run_are_refused_in_one_line(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        start_line(flags, {})


def test_remote_signer_runs_lpnode_signer_and_wins_over_orchestrator() -> None:
    line = start_line(["-remoteSigner", "-orchestrator", "-httpAddr", "127.0.0.1:7936", "-network", "x"], {})
    assert line.argv[0] == "signer" and {"-httpAddr=127.0.0.1:7936", "-network=x"} <= set(line.argv)


def test_flags_come_from_the_command_line_then_lp_env_then_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "livepeer.conf"
    config.write_text("# an operator's config\ngateway\norchAddr o-file:1\nhttpAddr 127.0.0.1:1\ncliAddr 127.0.0.1:2\n")
    env = {"LP_ORCHADDR": "o-env:1", "LP_HTTPADDR": "127.0.0.1:3", "LP_V": "6"}
    line = start_line(["-config", str(config), "-httpAddr", "127.0.0.1:4"], env)
    assert line.argv[0] == "gateway"
    assert {"-orchAddr=o-env:1", "-httpAddr=127.0.0.1:4", "-cliAddr=127.0.0.1:2", "-v=6"} <= set(line.argv)


def test_a_config_file_with_an_unknown_name_is_refused_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "livepeer.conf"
    config.write_text("gateway\norchAdr o:1\n")
    with pytest.raises(ConfigError, match=r"line 2: unknown flag -orchAdr \(did you mean -orchAddr\?\)$"):
        start_line(["-config", str(config)], {})


def test_lpnode_options_pass_through_after_go_flags() -> None:
    line = start_line(["-orchestrator", "-aiWorker", "--runner-backend", "docker", "--exit-with-parent"], {})
    assert line.argv[-3:] == ["--runner-backend", "docker", "--exit-with-parent"]


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["livepeer", "-version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("lpnode ")
    with pytest.raises(SystemExit) as exit_:
        main(["livepeer", "-help"])
    assert exit_.value.code == 0 and "go-livepeer's precedence" in capsys.readouterr().out


def test_pixels_per_unit_divides_the_gateways_price_cap() -> None:
    line = start_line(["-gateway", "-orchAddr", "o:1", "-maxPricePerUnit", "1000", "-pixelsPerUnit", "4"], {})
    settings = gateway_settings(build_parser().parse_args(line.argv))
    assert settings.caps.overall == Fraction(250)
    with pytest.raises(ConfigError, match=r"^-pixelsPerUnit must be a number above 0, got '0'$"):
        gateway_settings(build_parser().parse_args(["gateway", "-orchAddr", "o:1", "-pixelsPerUnit=0"]))
