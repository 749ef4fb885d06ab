"""dsq: settings, URL routes and the command-line entry point."""
