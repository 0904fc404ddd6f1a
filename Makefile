# The two commands: `make run` (set up, then open the dashboard) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch from this machine's wheel cache; a plain `pip install torch` would download gigabytes.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: run test test-quick screenshots setup prepare setup-test format clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[test]"
	touch $@

setup: $(BIN)/.installed

# The shipped models' ONNX Runtime versions, exported once into the cache (FER_CACHE_DIR, else
# ~/.cache/fer-lab; about half a minute the first time, a few seconds later), so that no answer
# waits for an export: until they are there, `--backend auto` answers on PyTorch.
prepare: setup
	$(BIN)/fer-export --cache

# Browser tests drive Debian's Chromium; install it when missing (needs root or sudo).
setup-test: setup
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: prepare
	$(BIN)/streamlit run dashboard/app.py

# Lint and format check first (seconds), then the suite.
test: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# The quick loop while developing: everything but training, exporting and the browser.
test-quick: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

# The README's screenshots: the browser tests write them to a temporary folder, and only when
# every one of them passes are they copied over results/screenshots.
screenshots: setup-test
	shots=$$(mktemp -d) && \
	FER_SCREENSHOT_DIR=$$shots $(BIN)/python -m pytest -q -p no:randomly -m slow \
	  tests/test_browser.py tests/test_browser_video.py tests/test_browser_analysis.py \
	  tests/test_browser_robustness.py tests/test_browser_real_clip.py && \
	cp $$shots/*.png results/screenshots/ && rm -r $$shots && ls results/screenshots

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache
