"""`python -m gitext` runs the same CLI as `git mlx`."""

from gitext.cli.main import main

raise SystemExit(main())
