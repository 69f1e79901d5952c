"""Runtime shared by every model version: load a verified artifact, serve it over HTTP."""
