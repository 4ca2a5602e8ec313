# vitlens — build, test, demo. Every target first installs the Debian packages it needs.
SHELL := /bin/bash
PKGS := pkg-config libopenblas-dev libpng-dev libjpeg-dev libturbojpeg0-dev libfreetype-dev fonts-dejavu-core libdnnl-dev libssl-dev
RELEASE := .build/release/vitlens
DEMO_CKPT := checkpoints/vit_tiny_init.safetensors
DEMO_MAE := checkpoints/vit_tiny_mae_demo.safetensors
DEMO_FT := checkpoints/vit_tiny_ft_demo.safetensors
# netrep, google/svcca and platonic-rep cloned at the commits scripts/make_similarity_goldens.py names.
SIMILARITY_PEERS ?= /tmp/peers

.PHONY: all deps build release test demo bench bench-peers fixtures checkpoints parity parity-probe html-check snapshots fuzz clean

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
	swift test --skip-build --disable-swift-testing

# The demo, over the bundled photographs, into reports/demo/: CKA between the random-init, the
# MAE-pretrained and the fine-tuned ViT-Tiny (pairs, and all three at once), attention
# distance/entropy (MAE against init; all three overlaid), and the layer-truncation probe of all
# three; each report with its figures and index.html.
demo: release
	$(RELEASE) inspect $(DEMO_MAE)
	$(RELEASE) cka $(DEMO_CKPT) $(DEMO_MAE) --images checkpoints/images --batch 8 --out reports/demo/cka-init-vs-mae
	$(RELEASE) cka $(DEMO_MAE) --images checkpoints/images --batch 8 --out reports/demo/cka-mae-self
	$(RELEASE) cka $(DEMO_MAE) $(DEMO_FT) --images checkpoints/images --batch 8 --out reports/demo/cka-mae-vs-ft
	$(RELEASE) cka $(DEMO_CKPT) $(DEMO_MAE) $(DEMO_FT) --names init,MAE,fine-tuned --images checkpoints/images --batch 8 --out reports/demo/cka-all
	$(RELEASE) attention $(DEMO_MAE) --compare $(DEMO_CKPT) --images checkpoints/images --batch 8 --out reports/demo/attention-mae-vs-init
	$(RELEASE) attention $(DEMO_FT) $(DEMO_MAE) $(DEMO_CKPT) --names fine-tuned,MAE,init --images checkpoints/images --batch 8 --out reports/demo/attention-all
	$(RELEASE) similarity $(DEMO_CKPT) $(DEMO_MAE) $(DEMO_FT) --names init,MAE,fine-tuned --images checkpoints/probe_images --measures cka,cka-debiased,rbf-cka,procrustes,svcca,mknn,rsa --bootstrap 20 --batch 16 --out reports/demo/similarity-all
	$(RELEASE) maps $(DEMO_MAE) --images checkpoints/images --num 40 --out reports/demo/maps-mae
	$(RELEASE) probe $(DEMO_CKPT) $(DEMO_MAE) $(DEMO_FT) --train checkpoints/probe_images --split 0.25 --batch 32 --out reports/demo/probe
	@echo "demo reports (open index.html in each): reports/demo/{cka-init-vs-mae, cka-mae-self, cka-mae-vs-ft, cka-all, attention-mae-vs-init, attention-all, similarity-all, maps-mae, probe}"

# Opens the demo's index.html pages in headless Chromium (installed if missing): checks figures
# and tables rendered, screenshots to reports/screenshots/.
html-check: demo
	scripts/check_html.sh reports/demo

# libFuzzer over the checkpoint reader, the unpickler and the PNG/JPEG decoders, FUZZ_SECONDS each
# (default 300; FUZZ_ASAN=1 with AddressSanitizer); crashing inputs and logs in reports/fuzz/.
fuzz: deps
	scripts/fuzz.sh

# Re-records the renderer's snapshot figures (Tests/Fixtures/snapshots) after a deliberate change.
snapshots: deps
	swift build --build-tests
	VITLENS_RECORD_SNAPSHOTS=1 swift test --skip-build --disable-swift-testing --filter RenderTests.FigureTests/testSnapshot || true
	git status --short Tests/Fixtures/snapshots

bench: release
	$(RELEASE) bench --figures --iters 21
	$(RELEASE) bench $(DEMO_CKPT) --batch 64 --iters 5 --profile
	$(RELEASE) bench $(DEMO_MAE) --batch 64 --iters 5 --profile
	scripts/bench_analyses.sh
	scripts/bench_memory.sh
	python3 scripts/bench_similarity_peers.py --peers $(SIMILARITY_PEERS) --n 6000 --rounds 3 --memory-n 10000

# vitlens against PyTorch eager and ONNX Runtime (images/s, alternating runs) in a virtual
# environment made here from PyPI: torch, timm, safetensors, onnx, onnxruntime.
bench-peers: release
	test -d .venv-peers || (python3 -m venv .venv-peers && .venv-peers/bin/pip install -q torch timm safetensors onnx onnxscript onnxruntime)
	.venv-peers/bin/python scripts/bench_peers.py $$(grep -q avx512_bf16 /proc/cpuinfo && echo --bf16)
	.venv-peers/bin/python scripts/bench_train_peers.py

# Regenerates the tiny test fixtures and goldens (needs: pip install torch timm transformers
# safetensors pillow scikit-image scikit-learn matplotlib).
fixtures:
	python3 Tests/Fixtures/make_fixtures.py
	python3 Tests/Fixtures/make_probe_goldens.py
	python3 Tests/Fixtures/make_image_goldens.py
	python3 Tests/Fixtures/make_corpus.py
	python3 Tests/Fixtures/make_family_fixtures.py
	python3 Tests/Fixtures/make_rope_fixtures.py
	python3 Tests/Fixtures/make_2025_fixtures.py
	python3 Tests/Fixtures/make_maps_goldens.py
	python3 Tests/Fixtures/make_hf_clip_fixtures.py
	python3 Tests/Fixtures/make_hf_dinov2_fixtures.py
	python3 Tests/Fixtures/make_hf_mae_fixtures.py
	python3 Tests/Fixtures/make_hf_siglip_beit_fixtures.py
	python3 Tests/Fixtures/make_hf_siglip2_fixtures.py
	python3 Tests/Fixtures/make_hf_aimv2_fixtures.py
	python3 Tests/Fixtures/make_hf_dinov3_fixtures.py
	python3 Tests/Fixtures/make_corpus_2025.py
	python3 scripts/make_colormap.py

# Regenerates the bundled checkpoints and demo images (same Python packages as fixtures;
# the MAE training takes about 25 minutes on 2 cores).
checkpoints: release
	python3 scripts/make_checkpoints.py
	python3 scripts/train_demo_checkpoint.py
	python3 scripts/make_probe_images.py checkpoints/probe_images --classes 6 --per-class 16 --size 112 --seed 0
	$(RELEASE) finetune $(DEMO_MAE) --train checkpoints/probe_images --split 0.25 --epochs 15 --save $(DEMO_FT) --save-dtype f16 --out reports/finetune-demo

# Full-size parity against timm in float64 on your machine (same Python packages as fixtures).
parity: release
	python3 scripts/parity_fullsize.py
	python3 scripts/parity_analyses.py
	python3 scripts/check_save_timm.py

# The linear probe against timm features + scikit-learn on 480 real photographs (about 9 minutes;
# needs torch, timm, torchvision, scikit-learn, scikit-image, pillow).
parity-probe: release
	python3 scripts/parity_probe.py

clean:
	rm -rf .build reports/*
