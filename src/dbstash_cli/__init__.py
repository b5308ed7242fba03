"""dbstash's command line and container entrypoint: thin users of the ``dbstash`` library."""

import gc

# Start-up: importing dbstash creates some 50 dataclasses and a few hundred functions; the cyclic
# garbage collector would walk all of them several times while they load (~10 ms of every run,
# measured). So the CLI is imported with it off; what the imports made is then frozen (it lives as long
# as the process: never scanned again) and the collector is switched back on.
if gc.isenabled():
    gc.disable()
    try:
        import dbstash_cli.main  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()
