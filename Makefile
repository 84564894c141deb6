# Shortcuts for tasks.py, which needs nothing but Python 3.11+.
PYTHON ?= python3

.PHONY: demo test lint run
demo test lint run:
	$(PYTHON) tasks.py $@
