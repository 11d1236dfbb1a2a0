# bertrepro: `make book` runs the whole book, `make test` runs the tests.
# Both create .venv and install the pinned dependencies on first use.
# `make lab` opens the chapters in JupyterLab; `make browser-test` checks the built book in Chromium.

# The interpreter that creates .venv: PYTHON if given, else the first of python3.13, python3.12,
# python3.11, python3 that is Python 3.11 or newer (the pinned packages need 3.11).
PYTHON_MIN := 3.11
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3
# Shell snippets: the "major.minor" of interpreter $$p, and whether version $$v is at least 3.11.
py_version = $$($$p -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
py_new_enough = case "$$v" in 3.1[1-9]|3.[2-9][0-9]|[4-9].*) true;; *) false;; esac
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do v=$(py_version); if $(py_new_enough); then echo $$p; exit 0; fi; done; echo python3)
endif
# Stops with one line naming the version found and the one needed.
check_python = p='$(PYTHON)'; v=$(py_version); $(py_new_enough) || { \
	echo "bertrepro needs Python $(PYTHON_MIN) or newer, but $(PYTHON) is $${v:-not a working Python}; install Python $(PYTHON_MIN)+ or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=
ONLINE ?=
# `make wheelhouse` packs every pinned wheel for Linux x86-64 and WHEELHOUSE_PYTHON into WHEELHOUSE
# (pieces of at most 16 MB, SHA-256 in manifest.json); `make install WHEELHOUSE=dir` installs from it
# with no network.
WHEELHOUSE ?=
WHEELHOUSE_PYTHON ?= 3.11

export HF_HUB_DISABLE_TELEMETRY := 1

# JupyterLab on notebooks/, with jupytext's contents manager: a NN_slug.py chapter opens as a notebook.
LAB_FLAGS := --ServerApp.root_dir=. --ServerApp.contents_manager_class=jupytext.TextFileContentsManager --LabApp.default_url=/lab/tree/notebooks

# Headless Chromium for the browser test: Debian's chromium (installed by `make browser-deps` when
# no browser is found), or a Google Chrome already on the machine (GitHub's Ubuntu runners).
CHROMIUM ?= $(firstword $(wildcard /usr/bin/chromium /usr/bin/google-chrome /usr/bin/google-chrome-stable) /usr/bin/chromium)
SUDO = $(shell [ "$$(id -u 2>/dev/null)" = 0 ] || echo sudo)

.PHONY: book test install sync bench clean print-python lab browser-deps browser-test wheelhouse

$(PY):
	@$(check_python)
	$(PYTHON) -m venv $(VENV)

# The interpreter .venv would be created with, and its version.
print-python:
	@$(check_python); echo "$(PYTHON) $$v"

$(STAMP): $(PY) requirements.txt pyproject.toml
ifeq ($(WHEELHOUSE),)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
else
	$(PY) -P bertrepro/wheelhouse.py install $(WHEELHOUSE) --python $(PY)
endif
	$(PY) -m pip install --quiet --no-deps $(if $(WHEELHOUSE),--no-build-isolation) -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

wheelhouse:
	@test -n "$(WHEELHOUSE)" || { echo "usage: make wheelhouse WHEELHOUSE=dir [WHEELHOUSE_PYTHON=3.11]" >&2; exit 2; }
	$(or $(wildcard $(PY)),$(PYTHON)) -P bertrepro/wheelhouse.py collect $(WHEELHOUSE) --python-version $(WHEELHOUSE_PYTHON)

book: $(STAMP)
	$(PY) -m bertrepro.book $(if $(PROFILE),--profile $(PROFILE)) $(if $(ONLINE),--online) $(if $(DRY_RUN),--dry-run --no-html)

test: $(STAMP)
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) $(if $(SUDO),,--allow-root)

# Debian's fonts-noto-cjk too, so that Chinese text in the screenshots is drawn, not empty boxes.
browser-deps: $(STAMP)
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing chromium with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
	@if ! fc-list :lang=zh family 2>/dev/null | grep -q .; then \
	  echo "installing fonts-noto-cjk with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk; \
	fi
	@"$(CHROMIUM)" --version

# Every page of book/_build/html (from `make book`) in headless Chromium at 1280 px; screenshots
# in book/_build/screenshots. Fails, rather than skips, when the book or the browser is missing.
browser-test: browser-deps
	BERTREPRO_BROWSER_TEST=require BERTREPRO_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q tests/test_browser.py

bench: $(STAMP)
	$(PY) -m bertrepro.bench

# Re-pair every notebooks/NN_slug.py with its .ipynb (outputs stripped).
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/[0-9]*.py

clean:
	rm -rf book/_build
