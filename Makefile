# The two commands of the README:
#   make book   build the rendered book into _build/html (executes every chapter once)
#   make test   unit tests + every chapter through nbmake + a strict book build
# Both create the virtual environment .venv and install the project when needed.
# PROFILE=full switches every chapter to the papers' settings (needs a GPU and time).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
STAGE := _stage
NBMAKE := --nbmake --nbmake-timeout=1200 --overwrite
export LANDMARKS_PROFILE := $(PROFILE)

.PHONY: book test unit notebooks checkpoints clean install benchmark

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[book,test]'
	touch $@

book: install
	$(PY) scripts/book.py stage
	$(PY) -m pytest $(STAGE)/notebooks $(NBMAKE) -p no:cacheprovider --junitxml=_build/notebooks.xml
	$(PY) scripts/book.py runtimes _build/notebooks.xml
	$(PY) scripts/book.py build

test: install
	$(PY) scripts/book.py stage
	$(PY) -m pytest tests $(STAGE)/notebooks $(NBMAKE) -p no:cacheprovider --durations=15 --junitxml=_build/tests.xml
	$(PY) scripts/book.py runtimes _build/tests.xml
	$(PY) scripts/book.py build --strict
	LANDMARKS_BUILT_BOOK=_build/html $(PY) -m pytest tests/built_book -q -p no:cacheprovider

unit: install
	$(PY) -m pytest tests -q

benchmark: install
	$(PY) benchmarks/synthetic_rate.py
	$(PY) benchmarks/heads_speed.py
	$(PY) benchmarks/loader_vs_step.py
	$(PY) benchmarks/real_photos_epoch.py
	$(PY) benchmarks/inference_speed.py

# Train and store the models the chapters load (skips those already stored with the same settings).
checkpoints: install
	$(PY) scripts/make_checkpoints.py

clean:
	rm -rf _build _stage .pytest_cache
