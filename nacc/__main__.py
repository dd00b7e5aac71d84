"""``python -m nacc ARGS``: the ``nacc`` command."""
from nacc.cli import main

main(prog_name="nacc")
