# The two commands of the README. Both set up what they need on a fresh machine.
.PHONY: demo test bench docs clean

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

docs:
	.venv/bin/mkdocs build --strict

clean:
	rm -rf demo .venv site .mypy_cache .ruff_cache
