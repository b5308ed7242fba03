"""``python -m dbstash_cli``."""

from dbstash_cli.main import main

main()
