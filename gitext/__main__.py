"""`python -m gitext` runs the same CLI as `git mlx`."""

from gitext.cli import main

raise SystemExit(main())
