# Two commands do all the set-up on a fresh machine:
#   make demo   install into .venv, make a synthetic dataset, train a small SAM 2 from random weights, evaluate, write overlays
#   make test   install the test extras and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision pinned to the releases this machine's pip serves from local disk (CPU use; CUDA works too)
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo demo-mask2former test bench bench-gpu bench-video install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

# Meta's reference SAM 2 (test-only: the exactness tests compare against it); no CUDA extension build.
$(VENV)/.reference: $(STAMP)
	$(BIN)/pip install -q hydra-core iopath portalocker tensordict
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation --no-deps sam2==1.1.0
	touch $@

install: $(STAMP)

# One thread: the demo's small model runs many small ops, where a second thread gains little, and threads that spin
# waiting for a core shared with other work slowed its steps 100-fold in our measurements (README, "The demo").
# 192 training images: with the image encoder frozen, 48 were learned by heart (train IoU 0.7, validation 0.4).
demo: export OMP_NUM_THREADS = 1
demo: $(STAMP)
	rm -rf runs/sam2_demo
	$(BIN)/segfit data synth --kind image --format labpics --out data/synth --num-train 192 --num-val 8
	$(BIN)/segfit data check -e configs/sam2_demo.yaml
	$(BIN)/segfit train -e configs/sam2_demo.yaml
	$(BIN)/segfit evaluate -e configs/sam2_demo.yaml
	$(BIN)/segfit inference -e configs/sam2_demo.yaml
	@echo
	@echo "Demo done. Before → after: the 'val miou@1: ... at step 0 → ... at step 6000' line above. Results in runs/sam2_demo/:"
	@echo "  plots/metrics.png, plots/loss.png                      the validation and training curves (also metrics.jsonl, results.csv, tensorboard/)"
	@echo "  samples/step_000000/ vs samples/step_006000/           ground truth | 1-click prediction overlays, before vs after training"
	@echo "  eval/metrics.json, eval/samples/                       final evaluation (click mIoU, box mIoU) and its overlays"
	@echo "  inference/                                             automatic instance maps (index, colour, overlay PNGs)"

# a tiny panoptic Mask2Former on synthetic data (configs/mask2former_demo.yaml; docs/mask2former.md)
demo-mask2former: $(STAMP)
	rm -rf runs/mask2former_demo
	$(BIN)/segfit data synth --kind panoptic --out data/synth_panoptic
	$(BIN)/segfit data check -e configs/mask2former_demo.yaml
	$(BIN)/segfit train -e configs/mask2former_demo.yaml
	$(BIN)/segfit evaluate -e configs/mask2former_demo.yaml
	$(BIN)/segfit inference -e configs/mask2former_demo.yaml
	$(BIN)/segfit export -e configs/mask2former_demo.yaml
	@echo
	@echo "Demo done. Results in runs/mask2former_demo/: metrics.jsonl, plots/, samples/ (overlays), eval/metrics.json (PQ),"
	@echo "  inference/ (panoptic PNGs, panoptic.json, overlays), export/model.onnx"

test: $(VENV)/.reference
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_finetune_step.py
	$(BIN)/python benchmarks/bench_loss_resolution.py
	$(BIN)/python benchmarks/bench_activation_checkpointing.py
	$(BIN)/python benchmarks/bench_onnx_decoder.py
	$(BIN)/python benchmarks/bench_batched_step.py
	$(BIN)/python benchmarks/bench_siamban.py
	$(BIN)/python benchmarks/bench_distributed.py --threads 1
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_serve.py

# on a CUDA machine: the GPU training table (docs/speed.md)
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu_step.py

# Meta's training package (the video benchmarks' peer, installed with sam2) needs these to import
$(VENV)/.reference-training: $(VENV)/.reference
	$(BIN)/pip install -q tensordict fvcore pandas submitit
	touch $@

bench-video: $(VENV)/.reference-training
	$(BIN)/python benchmarks/bench_clip_loading.py
	$(BIN)/python benchmarks/bench_video_step.py

clean:
	rm -rf runs/sam2_demo data/synth runs/mask2former_demo data/synth_panoptic
