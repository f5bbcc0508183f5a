"""The options of ``gradum score``: a config file, the command line over it, and no option
that can be misspelt.

- ``--config FILE`` (YAML or JSON, local or in a bucket): its keys are the long option names,
  with dashes or underscores (``rows-per-shard: 50000``, ``signals: [length, readability]``,
  ``inputs: [data/*.jsonl]``, Beam's too: ``direct_num_workers: 2``); a flag given on the
  command line overrides the file.
- gradum's own options are argparse's (no abbreviations); everything else goes to Beam and
  must be an option some Beam ``PipelineOptions`` class defines. A name nothing defines is an
  error that names it and suggests the closest option (``--num-shard``: did you mean
  ``--num-shards``?). The check happens before anything is written.
"""

from __future__ import annotations

import argparse
import difflib
import json
from typing import Any

CONFIG_OPTION = "--config"


class OptionError(ValueError):
    """An option that cannot be used: the message is one line."""


def load_config(path: str) -> dict[str, Any]:
    """A config file's mapping (YAML or JSON; ``.json`` is read as JSON, anything else as
    YAML, which JSON is a subset of)."""
    from pipelines.io import storage as fs

    try:
        data = fs.read_bytes(path)
    except (OSError, FileNotFoundError) as exc:
        raise OptionError(f"--config {path}: cannot read it ({exc})") from None
    try:
        if path.endswith(".json"):
            value = json.loads(data)
        else:
            import yaml

            value = yaml.safe_load(data)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's to fix
        raise OptionError(
            f"--config {path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {str(exc).splitlines()[0]}"
        ) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OptionError(f"--config {path}: expected a mapping of option names to values")
    return value


def beam_option_names() -> set[str]:
    """Every option name (without dashes) some Beam PipelineOptions class defines."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False)
    seen: set[type] = set()
    stack = list(PipelineOptions.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)  # noqa: SLF001 - how Beam registers its options
        except argparse.ArgumentError:
            pass  # an option two classes both define
    return {s.lstrip("-") for a in parser._actions for s in a.option_strings}  # noqa: SLF001


def _dests(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    out = {}
    for action in parser._actions:  # noqa: SLF001
        if action.dest != "help":
            out[action.dest] = action
    return out


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the options the command line names explicitly."""
    strings = parser._option_string_actions  # noqa: SLF001
    given = set()
    for token in argv:
        if token.startswith("-"):
            action = strings.get(token.split("=", 1)[0])
            if action is not None:
                given.add(action.dest)
    return given


def _as_flag(key: str, value: Any) -> list[str]:
    name = "--" + key
    if value is True:
        return [name]
    if value is False or value is None:
        return []
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    return [f"{name}={value}"]


def apply_config(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str], beam_args: list[str]
) -> list[str]:
    """Fill ``args`` from ``args.config`` where the command line did not give the option;
    return the Beam arguments, the file's first (the command line's come after and win)."""
    path = getattr(args, "config", None)
    if not path:
        return beam_args
    config = load_config(path)
    dests = _dests(parser)
    given = _given(parser, argv)
    from_file: list[str] = []
    for raw_key, value in config.items():
        key = str(raw_key).replace("-", "_")
        if key == "config":
            raise OptionError(f"--config {path}: a config file cannot name another config file")
        if key in dests:
            if key in given or (key == "inputs" and args.inputs):
                continue
            action = dests[key]
            if key == "inputs":
                value = [value] if isinstance(value, str) else [str(v) for v in value]
            elif key == "signals" and isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            elif isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
                if not isinstance(value, bool):
                    raise OptionError(f"--config {path}: {raw_key} must be true or false")
            elif action.type is not None and value is not None:
                try:
                    value = action.type(value)
                except (TypeError, ValueError):
                    raise OptionError(
                        f"--config {path}: {raw_key} must be {action.type.__name__}, got {value!r}"
                    ) from None
            if action.choices is not None and value not in action.choices:
                raise OptionError(
                    f"--config {path}: {raw_key} must be one of {', '.join(map(str, action.choices))}"
                )
            setattr(args, key, value)
        else:
            from_file.extend(_as_flag(key, value))
    return [*from_file, *beam_args]


def check_beam_args(beam_args: list[str], parser: argparse.ArgumentParser) -> None:
    """Refuse a runner gradum refuses (Beam's DaskRunner: its own options are not even
    registered before it loads), then an argument no Beam option defines, naming it and the
    closest option (in the spelling, dashes or underscores, the user wrote)."""
    from pipelines.job.command_line import named_runner
    from pipelines.job.runner import DASK_REFUSED, is_dask

    if is_dask(named_runner(beam_args) or ""):
        raise OptionError(DASK_REFUSED)
    known = beam_option_names()
    ours = {s.lstrip("-") for a in parser._actions for s in a.option_strings if s.startswith("--")}  # noqa: SLF001
    spellings: dict[str, set[str]] = {}
    for name in ours | known:
        spellings.setdefault(name.replace("-", "_"), set()).add(name)
    for token in beam_args:
        if not token.startswith("-"):
            continue
        name = token.lstrip("-").split("=", 1)[0]
        if name in known:
            continue
        hint = ""
        key = name.replace("-", "_")
        close = difflib.get_close_matches(key, sorted(spellings), n=1, cutoff=0.6)
        if close:
            options = sorted(spellings[close[0]])
            dashed = "-" in name or "_" not in name
            pick = next((o for o in options if ("-" in o) == dashed), options[0])
            hint = f"; did you mean --{pick}?"
        raise OptionError(f"unknown option --{name} (neither gradum's nor Beam's){hint}")
