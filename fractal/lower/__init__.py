"""Lowering to the shared tile IR (passes, pipeline, hardware records). Built in issue 5;
nothing here yet, so nothing imports it."""
