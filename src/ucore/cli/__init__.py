"""The ``ucore`` command line. It never imports Qt."""
