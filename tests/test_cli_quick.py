"""``ls`` without Typer reads every command line it accepts exactly as Typer does, and leaves
every other one to Typer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulltrace.cli import quick


def typer_ls() -> object:
    import typer

    from pulltrace.cli.app import declared

    return typer.main.get_command_from_info(
        declared()["ls"], pretty_exceptions_short=True, rich_markup_mode="rich"
    )


def typer_params(words: list[str]) -> dict[str, object]:
    """What Typer's ``ls`` gets from ``words``, the format as its name."""
    command = typer_ls()
    ctx = command.make_context("ls", list(words))  # type: ignore[attr-defined]
    params = dict(ctx.params)
    params["output"] = getattr(params["output"], "value", params["output"])
    return params


def test_the_table_is_typers_ls() -> None:
    """A flag added to or changed in ``ls`` must be taught here, or this fails."""
    command = typer_ls()
    declared = {p.name: p for p in command.params}  # type: ignore[attr-defined]
    assert set(declared) == set(quick.DEFAULTS)
    names = {opt: p.name for p in declared.values() for opt in (*p.opts, *p.secondary_opts)}
    flags = {opt: name for opt, name in names.items() if declared[name].is_flag}
    assert {o: n for o, n in flags.items() if n != "watch"} == quick.FLAGS
    assert {o: n for o, n in names.items() if o not in flags} == quick.VALUES
    defaults = {n: p.default for n, p in declared.items()}
    defaults["output"] = defaults["output"].value
    assert defaults == quick.DEFAULTS
    envvars = {n: p.envvar for n, p in declared.items() if p.envvar}
    assert envvars == {"containerd_namespace": quick.CONTAINERD_NAMESPACE_ENV}
    assert list(declared["output"].type.choices) == list(quick.FORMATS)


def test_the_completion_variable_is_typers() -> None:
    from pulltrace.cli import complete

    assert quick.COMPLETE_VAR == complete.COMPLETE_VAR


OPTIONS = [*quick.FLAGS, *quick.VALUES, "-w", "--watch", "-h", "--help", "--", "-An", "--no-json"]
VALUE = st.one_of(
    st.sampled_from(
        ["json", "wide", "table", "7", "007", "1s", "500ms", "0", "-x", "", "=", "a=b"]
    ),
    st.text(max_size=8),
)


PAIR = st.one_of(
    st.sampled_from(list(quick.FLAGS)).map(lambda flag: [flag]),
    st.tuples(st.sampled_from(list(quick.VALUES)), VALUE).map(list),
    st.tuples(st.sampled_from([v for v in quick.VALUES if v[1] == "-"]), VALUE).map(
        lambda pair: [f"{pair[0]}={pair[1]}"]
    ),
)
WORDS = st.one_of(
    st.lists(PAIR, max_size=5).map(lambda pairs: [w for pair in pairs for w in pair]),
    st.lists(
        st.one_of(
            st.sampled_from(OPTIONS),
            st.builds(lambda o, v: f"{o}={v}", st.sampled_from(OPTIONS), VALUE),
            VALUE,
        ),
        max_size=6,
    ),
)


@given(WORDS, st.sampled_from([None, "", "ns1"]))
@settings(max_examples=300, deadline=None)
def test_an_accepted_command_line_reads_as_typer_reads_it(
    words: list[str], env: str | None
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        if env is None:
            patch.delenv(quick.CONTAINERD_NAMESPACE_ENV, raising=False)
        else:
            patch.setenv(quick.CONTAINERD_NAMESPACE_ENV, env)
        params = quick.ls_params(["ls", *words])
        if params is not None:
            assert params == typer_params(words)
        elif all(w in quick.FLAGS for w in words):
            raise AssertionError(f"{words} is a plain listing")


@pytest.mark.parametrize(
    "words",
    [
        ["ls", "--json", "--server", "http://127.0.0.1:9"],
        ["ls", "-o", "wide", "-n", "shop", "--node=n1", "--phase", "failed,pulling", "-A"],
        ["ls", "--demo", "--seed", "3", "--sample", "500ms", "--image", "nginx"],
    ],
)
def test_plain_listings_skip_typer(words: list[str]) -> None:
    params = quick.ls_params(words)
    assert params is not None and params == typer_params(words[1:])


@pytest.mark.parametrize(
    "words",
    [
        ["ls", "--watch"],
        ["ls", "-w"],
        ["ls", "--help"],
        ["ls", "-o", "yaml"],
        ["ls", "--seed", "many"],
        ["ls", "--server"],
        ["ls", "--server", "--json"],
        ["ls", "-ojson"],
        ["ls", "-An", "shop"],
        ["ls", "--json=yes"],
        ["ls", "--sample", "0"],
        ["ls", "--", "x"],
        ["ls", "extra"],
        ["--version"],
        ["wait", "--json"],
        [],
    ],
)
def test_everything_else_is_left_to_typer(words: list[str]) -> None:
    assert quick.ls_params(words) is None


def test_shell_completion_is_left_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(quick.COMPLETE_VAR, "complete_bash")
    assert quick.ls_params(["ls", "--json"]) is None
