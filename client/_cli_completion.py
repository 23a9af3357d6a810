"""Shell completion scripts (bash, zsh, fish) generated from the ``pandanode`` argument parser.

The scripts are static: they list the commands, subcommands, options and choices the parser
has, so completing costs the shell nothing and never starts Python.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["script"]


@dataclass(frozen=True)
class _Level:
    """What can follow a command path (``""``, ``"document"``, ``"document create"``)."""

    path: str
    commands: tuple[tuple[str, str], ...]  # (name, help)
    options: tuple[tuple[str, str], ...]  # (option string, help)
    choices: tuple[str, ...]  # values of positional arguments with choices


def _levels(parser: argparse.ArgumentParser, path: str = "") -> Iterator[_Level]:
    commands: list[tuple[str, str]] = []
    children: list[tuple[str, argparse.ArgumentParser]] = []
    options: list[tuple[str, str]] = []
    choices: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, child in action.choices.items():
                commands.append((name, helps.get(name, "")))
                children.append((name, child))
        elif action.help == argparse.SUPPRESS:
            continue  # hidden aliases
        elif action.option_strings:
            described = (action.help or "").replace("%(default)s", str(action.default))
            options.extend((option, described) for option in action.option_strings)
        elif action.choices is not None:
            choices.extend(str(choice) for choice in action.choices)
    yield _Level(path, tuple(commands), tuple(options), tuple(choices))
    for name, child in children:
        yield from _levels(child, f"{path} {name}".strip())


def _bash(levels: list[_Level]) -> str:
    def case(words: dict[str, str]) -> str:
        arms = "".join(
            f"        {shlex.quote(path)}) echo {shlex.quote(text)} ;;\n"
            for path, text in words.items()
            if text
        )
        return f'    case "$1" in\n{arms}    esac\n'

    commands = {level.path: " ".join(name for name, _ in level.commands) for level in levels}
    choices = {level.path: " ".join(level.choices) for level in levels}
    options = {level.path: " ".join(option for option, _ in level.options) for level in levels}
    return (
        "# pandanode completion for bash (and zsh through bashcompinit).\n"
        '# Load it with: eval "$(pandanode completion bash)"\n'
        "_pandanode_commands() {\n" + case(commands) + "}\n"
        "_pandanode_choices() {\n" + case(choices) + "}\n"
        "_pandanode_options() {\n" + case(options) + "}\n"
        "_pandanode() {\n"
        '    local cur="${COMP_WORDS[COMP_CWORD]}" path="" word i\n'
        "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
        '        word="${COMP_WORDS[i]}"\n'
        '        case " $(_pandanode_commands "$path") " in\n'
        '            *" $word "*) path="${path:+$path }$word" ;;\n'
        "        esac\n"
        "    done\n"
        '    if [[ "$cur" == -* ]]; then\n'
        '        COMPREPLY=($(compgen -W "$(_pandanode_options "$path")" -- "$cur"))\n'
        "    else\n"
        '        COMPREPLY=($(compgen -W "$(_pandanode_commands "$path") '
        '$(_pandanode_choices "$path")" -- "$cur"))\n'
        "    fi\n"
        "}\n"
        "complete -o default -F _pandanode pandanode\n"
    )


def _zsh(levels: list[_Level]) -> str:
    return (
        "#compdef pandanode\n"
        '# pandanode completion for zsh. Load it with: eval "$(pandanode completion zsh)"\n'
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + _bash(levels)
    )


def _fish(levels: list[_Level]) -> str:
    def quote(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    arms = "".join(
        f"        case {quote(level.path)}\n"
        f"            printf '%s\\n' {' '.join(quote(name) for name, _ in level.commands)}\n"
        for level in levels
        if level.commands
    )
    lines = [
        "# pandanode completion for fish.",
        "# Install it with: pandanode completion fish > ~/.config/fish/completions/pandanode.fish",
        "function __pandanode_commands",
        "    switch $argv[1]",
        arms.rstrip("\n"),
        "    end",
        "end",
        "function __pandanode_path",
        "    set -l path ''",
        "    for word in (commandline -opc)[2..-1]",
        '        if contains -- $word (__pandanode_commands "$path")',
        '            set path (string trim -- "$path $word")',
        "        end",
        "    end",
        "    echo $path",
        "end",
        "function __pandanode_at",
        '    test (__pandanode_path) = "$argv[1]"',
        "end",
    ]
    for level in levels:
        condition = quote(f"__pandanode_at {quote(level.path)}")
        for name, help_text in level.commands:
            lines.append(
                f"complete -c pandanode -n {condition} -f -a {quote(name)} -d {quote(help_text)}"
            )
        if level.choices:
            values = quote(" ".join(level.choices))
            lines.append(f"complete -c pandanode -n {condition} -f -a {values}")
        for option, help_text in level.options:
            flag = f"-l {quote(option[2:])}" if option.startswith("--") else f"-s {option[1:]}"
            lines.append(f"complete -c pandanode -n {condition} {flag} -d {quote(help_text)}")
    return "\n".join(lines) + "\n"


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser``'s commands for ``shell`` (bash, zsh or fish)."""
    levels = list(_levels(parser))
    writers = {"bash": _bash, "zsh": _zsh, "fish": _fish}
    return writers[shell](levels)
