# Set-up and everyday commands. Each target sets the environment up first if needed:
# a virtual environment in $(VENV) with torch, san_d2 (editable) and detectron2.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.san_d2-setup-done
PYTEST_ARGS ?=

.PHONY: setup test run clean-venv

setup: $(SETUP_STAMP)

# Re-run when any of the inputs of the set-up change; each step is a no-op when satisfied.
$(SETUP_STAMP): requirements/torch.txt setup.py tools/install_detectron2.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r requirements/torch.txt
	$(PY) -m pip install --disable-pip-version-check -e '.[test]'
	$(PY) tools/install_detectron2.py
	@touch $@

# The test suite (CPU only, no downloads).
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job: the offline quick start (train the tiny SAN on synthetic scenes, evaluate, draw).
run: setup
	$(VENV)/bin/san-quickstart --output output/quickstart

clean-venv:
	rm -rf $(VENV)
