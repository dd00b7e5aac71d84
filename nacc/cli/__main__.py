"""``python -m nacc.cli ARGS``: the ``nacc`` command."""
from nacc.cli import main

main(prog_name="nacc")
