# feedgate: `make demo` runs the main job on the embedded default, `make test` passes the tests.
# Both create .venv (Python >= 3.11) when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test test-future lint demo bench clean peers sysdeps

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# One pytest worker per core (pytest-xdist): most tests wait on processes and sockets they
# start, so two workers on two cores take the suite from about 12 minutes to about 7.
test: lint peers sysdeps
	$(BIN)/pytest -q -n auto --durations=20

# The suite with the wall clock moved ahead (FUTURE_DAYS, default a year): a test that passes
# today must pass on any day, so none may hold a date that a clock can overtake. The clock is
# moved by tests/tools/clock_offset.c (an LD_PRELOAD shim: only the real-time clock moves; why
# not libfaketime is said there), built with the C compiler into .cache.
FUTURE_DAYS ?= 365
CLOCK_SHIM  := .cache/clock_offset.so
$(CLOCK_SHIM): tests/tools/clock_offset.c
	@mkdir -p .cache
	cc -shared -fPIC -O2 -Wall -o $@ $< -ldl
test-future: venv peers sysdeps $(CLOCK_SHIM)
	FEEDGATE_CLOCK_OFFSET=$$(( $(FUTURE_DAYS) * 86400 )) LD_PRELOAD=$(CURDIR)/$(CLOCK_SHIM) \
	    $(BIN)/pytest -q -n auto -p no:cacheprovider

# System packages the tests need: PostgreSQL (Debian's, for initdb/pg_ctl; tests/pgserver.py
# starts its own server), Postfix (Debian's; tests/postfix.py runs its own throw-away
# instance) and Chromium (Debian's; the console's browser tests drive it with Playwright, whose
# own browser download cannot work here: tests/console/conftest.py launches this binary; with
# fonts-liberation, which chromium only recommends: without a font, text renders as boxes). Installed with apt only when missing and we are root; a failed install or a missing
# one we may not install warns loudly, and the tests that need it skip (fail under
# FEEDGATE_REQUIRE_ALL=1). Postfix is preseeded "No configuration": no /etc/postfix/main.cf, no
# system instance configured or started. It is not installed over another MTA (apt would remove
# it to make room): that case is a loud skip too.
PG_INITDB = /usr/lib/postgresql/*/bin/initdb
POSTFIX   = /usr/sbin/postfix
CHROMIUM  = /usr/lib/chromium/chromium
BANNER    = !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
sysdeps:
	@if ls $(PG_INITDB) >/dev/null 2>&1; then \
	    :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "sysdeps: PostgreSQL is missing: apt-get install postgresql"; mkdir -p .cache; \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends postgresql; } >.cache/sysdeps.log 2>&1 \
	    && ls $(PG_INITDB) >/dev/null 2>&1 \
	    || printf '%s\n' "$(BANNER)" \
	        "!!! installing PostgreSQL with apt FAILED (see .cache/sysdeps.log):" \
	        "!!! the PostgreSQL tests will be SKIPPED (FAIL under FEEDGATE_REQUIRE_ALL=1)" \
	        "$(BANNER)" >&2; \
	else \
	    printf '%s\n' "$(BANNER)" \
	        "!!! PostgreSQL is not installed and we are not root, so it cannot be installed:" \
	        "!!!   sudo apt-get install --no-install-recommends postgresql" \
	        "!!! the PostgreSQL tests will be SKIPPED (FAIL under FEEDGATE_REQUIRE_ALL=1)" \
	        "$(BANNER)" >&2; \
	fi
	@if [ -x $(POSTFIX) ]; then \
	    :; \
	elif [ -e /usr/sbin/sendmail ]; then \
	    printf '%s\n' "$(BANNER)" \
	        "!!! Postfix is not installed and another MTA is (/usr/sbin/sendmail): not replacing it." \
	        "!!!   apt-get install postfix (it removes the other MTA) to run the Postfix tests" \
	        "!!! the Postfix tests will be SKIPPED (FAIL under FEEDGATE_REQUIRE_ALL=1)" \
	        "$(BANNER)" >&2; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "sysdeps: Postfix is missing: apt-get install postfix (no system instance)"; \
	    mkdir -p .cache; \
	    { echo 'postfix postfix/main_mailer_type select No configuration' \
	        | debconf-set-selections \
	      && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends postfix; } >>.cache/sysdeps.log 2>&1 \
	    && [ -x $(POSTFIX) ] \
	    || printf '%s\n' "$(BANNER)" \
	        "!!! installing Postfix with apt FAILED (see .cache/sysdeps.log):" \
	        "!!! the Postfix tests will be SKIPPED (FAIL under FEEDGATE_REQUIRE_ALL=1)" \
	        "$(BANNER)" >&2; \
	else \
	    printf '%s\n' "$(BANNER)" \
	        "!!! Postfix is not installed and we are not root, so it cannot be installed:" \
	        "!!!   echo 'postfix postfix/main_mailer_type select No configuration' \\" \
	        "!!!     | sudo debconf-set-selections" \
	        "!!!   sudo apt-get install --no-install-recommends postfix" \
	        "!!! the Postfix tests will be SKIPPED (FAIL under FEEDGATE_REQUIRE_ALL=1)" \
	        "$(BANNER)" >&2; \
	fi
	@if [ -x $(CHROMIUM) ]; then \
	    :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "sysdeps: Chromium is missing: apt-get install chromium fonts-liberation"; mkdir -p .cache; \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends chromium fonts-liberation; } >>.cache/sysdeps.log 2>&1 \
	    && [ -x $(CHROMIUM) ] \
	    || printf '%s\n' "$(BANNER)" \
	        "!!! installing Chromium with apt FAILED (see .cache/sysdeps.log):" \
	        "!!! the console's browser tests will be SKIPPED (FAIL under FEEDGATE_REQUIRE_ALL=1)" \
	        "$(BANNER)" >&2; \
	else \
	    printf '%s\n' "$(BANNER)" \
	        "!!! Chromium is not installed and we are not root, so it cannot be installed:" \
	        "!!!   sudo apt-get install --no-install-recommends chromium fonts-liberation" \
	        "!!! the console's browser tests will be SKIPPED (FAIL under FEEDGATE_REQUIRE_ALL=1)" \
	        "$(BANNER)" >&2; \
	fi

# Peers for interop tests (cabby, OpenTAXII, python-stix with old pins) in .cache/peers/venv:
# built once, rebuilt when tests/data/peers/requirements.txt changes. A failed build warns loudly
# and the tests that need it skip (fail under FEEDGATE_REQUIRE_ALL=1).
peers: venv
	$(BIN)/python tests/peers.py build

# The whole system on the embedded default (Ctrl-C stops it): a demo hub, a source on it, one
# poll, then the SMTP gateway on 127.0.0.1:10025 (clean mail into a Maildir under the data
# directory, see README), the scheduler and the REST API.
demo: venv
	$(BIN)/feedgate up

bench: venv
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/stix_extract.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
