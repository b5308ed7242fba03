# The two commands of the README. Both set up what they need on a fresh machine.
.PHONY: demo test bench docs images clean

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

# the container images this machine can build (podman; run by `make test` too), listed with what it cannot build
images:
	scripts/images.sh

# the docs site into site/; makes the virtualenv it needs on a fresh clone
docs:
	scripts/docs.sh

clean:
	rm -rf demo .venv site .mypy_cache .ruff_cache
