# Everyday entry points. Each one runs .ci/bootstrap first, which installs what is
# missing (Debian packages, .venv, the package in editable mode) and is quick when
# nothing changed.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# `make run` keeps its state under ./var so it needs no root and no /var/lib.
DEV_STATE := $(CURDIR)/var
DEV_ENV := \
	CAMERA_SERVICE_SERVER_STATE_DIR=$(DEV_STATE) \
	CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH=$(DEV_STATE)/recordings \
	CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH=$(DEV_STATE)/snapshots \
	CAMERA_SERVICE_SECURITY_API_KEYS_FILE=$(DEV_STATE)/api-keys.json
ROLE ?= admin
USER_ID ?= $(shell id -un)
PYTEST_ARGS ?=

.PHONY: setup run token test bench check-config docs deb clean

setup:
	@bash .ci/bootstrap

run: setup
	@mkdir -p $(DEV_STATE)
	@echo ""
	@echo "camera-service: API  ws://localhost:8002/ws    health http://localhost:8003/health"
	@echo "  get a token:   make token ROLE=admin       (in another shell, same directory)"
	@echo "  quick check:   curl -s localhost:8003/health/detailed"
	@echo "  stop:          Ctrl-C"
	@echo ""
	$(DEV_ENV) $(VENV)/bin/twistd -n --pidfile= camera-service --config conf/camera-service.yaml

token: setup
	@$(DEV_ENV) $(VENV)/bin/camera-service-admin --config conf/camera-service.yaml \
		token --user $(USER_ID) --role $(ROLE)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) bench/run.py --scenario all

check-config: setup
	$(PY) -m camera_service.config.check conf/camera-service.yaml

# Regenerates docs/configuration.md (from the config schema) and docs/api-reference.md
# (from the method table); tests/test_docs_sync.py fails when they are out of date.
docs: setup
	$(PY) -m camera_service.docgen --write

# The Debian package (docs/packaging.md). Built from a copy of the working tree's files
# (tracked, and untracked but not ignored) so the build never touches this checkout's
# .venv or egg-info; the .deb lands in $(DEB_OUT)/. Needs PyPI for the dependencies.
DEB_OUT ?= dist
DEB_BUILD := build/deb
deb: setup
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/src $(DEB_OUT)
	git ls-files -z --cached --others --exclude-standard \
		| while IFS= read -r -d '' f; do [ -e "$$f" ] && printf '%s\0' "$$f"; done \
		| tar --null -T - -cf - | tar -xf - -C $(DEB_BUILD)/src
	cd $(DEB_BUILD)/src && dpkg-buildpackage -us -uc -b
	mv $(DEB_BUILD)/*.deb $(DEB_OUT)/
	@ls -l $(DEB_OUT)/*.deb

clean:
	rm -rf $(VENV) var build dist *.egg-info bench/node_modules bench/results
