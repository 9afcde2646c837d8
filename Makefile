# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean
# Maps inline Leaflet, installed by npm from package-lock.json (pinned version, integrity checked).
ASSETS := agri_3s/outputs/webmap/vendor
LEAFLET := $(ASSETS)/node_modules/leaflet/dist/leaflet.js
# Browser tests drive Debian's chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,stac,distributed]"
	touch $(STAMP)

$(LEAFLET): $(ASSETS)/package-lock.json
	command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
	npm ci --ignore-scripts --no-audit --no-fund --prefix $(ASSETS)

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

demo: $(STAMP) $(LEAFLET)
	$(BIN)/agri3s demo --out maps/demo

test: $(STAMP) $(LEAFLET) $(CHROMIUM)
	$(BIN)/python -m pytest -q

bench: $(STAMP) $(LEAFLET) $(CHROMIUM)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m pytest -q -s tests/benchmarks -p no:cacheprovider -o addopts=""

lint: $(STAMP)
	$(BIN)/ruff check agri_3s tests

clean:
	rm -rf $(VENV) sample_data/generated maps/demo
