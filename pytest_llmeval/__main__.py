"""`python -m pytest_llmeval`: the saved-runs command line (`pytest_llmeval.cli`)."""

from pytest_llmeval.cli import main

raise SystemExit(main())
