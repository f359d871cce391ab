# Foundations of Large Models: the commands the README documents.
#
#   make book       create .venv, install everything, build the site (_build/html)
#   make test       the same install, build the site and the student site, lint
#                   (ruff), then run every test, execute every notebook (nbval) and
#                   open the site in Chromium
#   make lab        JupyterLab on the notebooks (jupyterlab-myst renders exercises)
#   make notebooks  re-execute every notebook in place, top to bottom: the one
#                   way stored outputs are produced; then rewrite the Colab edition
#   make bench      rerun the CPU benchmarks and rewrite the results the book ships
#                   (bigmodel_lib/results/; several hours on 2 cores; BENCH="a b"
#                   reruns some); then make notebooks, and the tests
#   make colab      rewrite the Colab edition (colab/: MyST as plain Markdown)
#   make student    write the student edition (student/: no solutions, answer cells
#                   emptied) and build its site strictly into _build/student/html
#   make instructor install otter-grader (the instructor extra) into .venv-instructor
#                   and write an autograder bundle per exercise notebook:
#                   _build/instructor/<notebook>/autograder.zip
#   make grade SUBMISSIONS=dir
#                   grade every notebook under dir, without Docker, each within
#                   TIMEOUT seconds (120), into _build/instructor/grades.csv.
#                   Submitted code runs unsandboxed: use a throwaway machine.
#
# PYTHON picks the interpreter that creates the virtual environment (3.10-3.13).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

INSTRUCTOR_VENV ?= .venv-instructor
IBIN := $(INSTRUCTOR_VENV)/bin
SUBMISSIONS ?=
TIMEOUT ?= 120
JOBS ?= 1

.PHONY: help install book test browser lab notebooks bench colab student student-site instructor grade clean

help:
	@sed -n '2,25p' Makefile

# Installs torch and torchvision together, unpinned, so pip picks a pair that
# works on this platform (CUDA on Linux x86_64, CPU elsewhere, MPS on Apple).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test,lab]"
	@touch $@

install: $(STAMP)

# Strict build: any warning fails it. Notebooks are rendered from their stored
# outputs (execute_notebooks: off), so this takes seconds once installed.
book: $(STAMP)
	$(BIN)/jupyter-book build -W -n --keep-going .

# The browser test needs Chromium. Install Debian's package where we can (root
# with apt); otherwise the test skips and says how to install it.
browser:
	@if [ -n "$$CHROMIUM" ] && [ -x "$$CHROMIUM" ]; then \
	  echo "Browser for the browser test: $$CHROMIUM"; \
	elif [ -x /usr/bin/chromium ]; then \
	  echo "Chromium found: /usr/bin/chromium"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Chromium with apt-get (Debian package 'chromium')"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "apt-get could not install chromium: the browser test will skip (and fails under CI)"; \
	else \
	  echo "Chromium not found and not installable here (needs root and apt-get);"; \
	  echo "the browser test will skip. Install it with: sudo apt-get install chromium"; \
	fi
	@# A CJK font, so that the screenshots show the glossary's Chinese terms (1.6 MB).
	@if command -v fc-list >/dev/null 2>&1 && [ -z "$$(fc-list :lang=zh 2>/dev/null)" ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing a CJK font with apt-get (Debian package 'fonts-wqy-microhei')"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 \
	    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null) \
	    || echo "apt-get could not install fonts-wqy-microhei: screenshots will show Chinese as boxes"; \
	fi

test: book student-site browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python tools/run_benchmarks.py $(if $(BENCH),--only $(BENCH))

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

notebooks: $(STAMP)
	$(BIN)/python tools/run_notebooks.py
	$(BIN)/python tools/colab_edition.py
	$(BIN)/python tools/student_edition.py

# The notebooks as Colab can read them; tests/test_colab.py fails when it is stale.
colab: $(STAMP)
	$(BIN)/python tools/colab_edition.py

# The student edition: every notebook without its solutions (student/, committed, for
# the launch buttons) and a site built strictly from it; tests/test_student.py checks both.
student: $(STAMP)
	$(BIN)/python tools/student_edition.py --build

# What `make test` builds: the student site, after checking that the committed student/
# is up to date (it writes nothing there, so a stale copy fails instead of being fixed).
student-site: $(STAMP)
	$(BIN)/python tools/student_edition.py --check --build

# otter-grader gets its own environment, layered on .venv (a .pth file puts .venv's packages, torch and
# the editable library included, behind its own, so nothing is installed twice): it pulls in ipywidgets,
# which would turn tqdm's bars into widgets and change the notebooks' stored outputs, and it downgrades wrapt.
$(IBIN)/.installed: $(STAMP) pyproject.toml
	$(BIN)/python -m venv $(INSTRUCTOR_VENV)
	$(BIN)/python -c 'import sysconfig; print("import site; site.addsitedir(%r)" % sysconfig.get_paths()["purelib"])' \
	  > "$$($(IBIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_bigmodel_base_venv.pth"
	$(IBIN)/python -m pip install --quiet -e ".[instructor]"
	@touch $@

# One otter-grader bundle per exercise notebook (tools/instructor_edition.py); otter assign checks
# that every reference solution passes its hidden test.
instructor: $(IBIN)/.installed
	$(IBIN)/python tools/instructor_edition.py

# Grades with the bundles of `make instructor`, without Docker; each submission is killed after
# TIMEOUT seconds and reported as timed out (tools/grade.py). The code runs unsandboxed.
grade: $(IBIN)/.installed
	@if [ -z "$(SUBMISSIONS)" ]; then echo "usage: make grade SUBMISSIONS=folder-of-notebooks [TIMEOUT=120] [JOBS=1]"; exit 2; fi
	$(IBIN)/python tools/grade.py "$(SUBMISSIONS)" --timeout $(TIMEOUT) --jobs $(JOBS)

clean:
	rm -rf _build
