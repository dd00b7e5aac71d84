"""``nacc models``: the model zoo (``nacc.models``): the neural models that ``--model NAME``
finds, and the cm priors that ``--param prior=NAME`` chooses."""
from __future__ import annotations

import json

import click

from nacc.cli.common import printable


def _model_line(name: str, folder) -> str:
    try:
        cfg = json.loads((folder / "config.json").read_text())
        fs = "x".join(str(int(x)) for x in cfg["frame_shape"])
        what = f"{cfg['arch']}, vocab {cfg['vocab']}, {fs} frames, weights {cfg['sha256'][:16]}"
    except (OSError, ValueError, KeyError, TypeError) as e:
        what = f"unreadable config ({type(e).__name__})"
    return f"  {name:<28} {what}  ({folder})"


@click.command("models")
def models():
    """List the model zoo: neural models by name (--model NAME) and the cm priors
    (--param prior=NAME).  The zoo is $NACC_MODELS, the checkout's models/, and
    <prefix>/share/nacc/models of a pip install, searched in that order."""
    from nacc import models as zoo

    dirs = zoo.search_dirs()
    click.echo("model folders searched: "
               + (", ".join(printable(str(d)) for d in dirs) if dirs else "(none found)"))
    found = list(zoo.zoo())
    click.echo("neural models (--predictor transformer|lstm|cm --model NAME):")
    click.echo("\n".join(printable(_model_line(n, f)) for n, f in found) if found else
               "  (none listed: nacc train -o DIR writes one; --model DIR uses it, and a folder\n"
               "   of such folders in $NACC_MODELS makes them known by name)")
    priors_file = zoo.shipped("cm-prior") / "priors.json"
    try:
        doc = json.loads(priors_file.read_text())
        priors, default_fit = doc["priors"], doc.get("fitted_on", "")
    except (OSError, ValueError, KeyError, TypeError):
        priors, default_fit = {}, ""
    click.echo("cm priors (--param prior=NAME; default commavq-v4 for vocab 1024):")
    for name, p in sorted(priors.items()):
        if not isinstance(p, dict):
            continue
        fitted = p.get("fitted_on", default_fit)
        click.echo(printable(f"  {name:<28} vocab {p.get('vocab', '?')}"
                             + (f", fitted on {fitted}" if fitted else "")))
