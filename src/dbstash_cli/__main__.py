"""``python -m dbstash_cli``."""

from dbstash_cli.core import main

main()
