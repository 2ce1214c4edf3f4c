"""The thin command-line layer: typer commands that call library code and render
its results with rich (for people) or JSON (for scripts)."""
