"""What motpipe makes of the arguments its commands pass on to Beam: options no one takes, bare words that are
the value of no option, and (for the commands that only read outputs) anything but filesystem options."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.storage import FILESYSTEM_OPTION_NAMES


def unknown_beam_options(beam_args: list[str]) -> list[str]:
    """Arguments that no registered Beam pipeline option takes (Beam itself would drop them silently)."""
    options = PipelineOptions(beam_args)
    known = options.get_all_options()
    return sorted(f"--{name}" for name in options.get_all_options(retain_unknown_options=True) if name not in known)


def stray_arguments(beam_args: list[str]) -> list[str]:
    """Bare arguments that are the value of no option, e.g. the 2nd, 3rd, ... file of an unquoted shell glob
    (`-t in/*` expands to `-t in/a.jsonl in/b.jsonl`); Beam would ignore them. An unknown `--name` followed by a
    bare argument takes it as its value, as Beam does."""
    parsers = []
    PipelineOptions(beam_args).get_all_options(add_extra_args_fn=parsers.append)
    _, unknown = parsers[0].parse_known_args(beam_args)
    stray, i = [], 0
    while i < len(unknown) and unknown[i] != "--":
        if not unknown[i].startswith("-"):
            stray.append(unknown[i])
            i += 1
        elif "=" not in unknown[i] and i + 1 < len(unknown) and not unknown[i + 1].startswith("-"):
            i += 2  # an option and its value
        else:
            i += 1
    return stray


def non_filesystem_arguments(beam_args: list[str]) -> list[str]:
    """The arguments among `beam_args` that are no Beam filesystem option (storage.FILESYSTEM_OPTION_NAMES): other
    options, known to Beam or not, then stray bare words."""
    given = PipelineOptions(beam_args).get_all_options(drop_default=True, retain_unknown_options=True)
    return sorted(f"--{name}" for name in given if name not in FILESYSTEM_OPTION_NAMES) + stray_arguments(beam_args)
