"""dbstash's command line and container entrypoint: thin users of the ``dbstash`` library."""
