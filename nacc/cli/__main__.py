"""``python -m nacc.cli ARGS``: the ``nacc`` command."""
from nacc.cli import run

run()
