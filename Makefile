# vitlens — build, test, demo. Every target first installs the Debian packages it needs.
SHELL := /bin/bash
PKGS := pkg-config libopenblas-dev libpng-dev libjpeg-dev libturbojpeg0-dev
RELEASE := .build/release/vitlens
DEMO_CKPT := checkpoints/vit_tiny_init.safetensors

.PHONY: all deps build release test demo bench fixtures checkpoints parity clean

all: build

# Installs whatever of $(PKGS) is missing (as root, or through sudo).
deps:
	@missing=""; for p in $(PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	swift build

release: deps
	swift build -c release

test: deps
	swift build --build-tests
	swift test --skip-build

# The demo: inspect the bundled checkpoint and extract features and attention maps of the
# bundled photographs into reports/demo/.
demo: release
	$(RELEASE) inspect $(DEMO_CKPT)
	$(RELEASE) extract $(DEMO_CKPT) --images checkpoints/images --num 8 --batch 8 --out reports/demo/extract
	@echo "demo report: reports/demo/extract (features.npy, attention.npy, meta.json)"

bench: release
	$(RELEASE) bench $(DEMO_CKPT) --batch 64 --iters 5

# Regenerates the tiny test fixtures and goldens (needs: pip install torch timm safetensors pillow scikit-image).
fixtures:
	python3 Tests/Fixtures/make_fixtures.py

# Regenerates the bundled checkpoint(s) and demo images (same Python packages as fixtures).
checkpoints:
	python3 scripts/make_checkpoints.py

# Full-size parity against timm in float64 on your machine (same Python packages as fixtures).
parity: release
	python3 scripts/parity_fullsize.py

clean:
	rm -rf .build reports/*
