"""``python -m nacc ARGS``: the ``nacc`` command."""
from nacc.cli import run

run()
