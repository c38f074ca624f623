"""The ``segfit`` command: parse, load the spec, call a task. Nothing else lives here.

Examples:
    segfit data synth --kind image --out data/synth
    segfit data synth --kind video --out data/synth_video
    segfit data synth --kind panoptic --out data/synth_panoptic
    segfit data synth --kind tracking --out data/synth_tracking --num-frames 24
    segfit data extract-frames sav_train/ --out sav_frames/ --every 4 --workers 8
    segfit data prepare-tracking GOT-10k/train --format got10k --out got10k_crop511/ --workers 8
    segfit data check -e configs/sam2_demo.yaml
    segfit train -e configs/sam2_demo.yaml train.max_steps=200 model.trainable=[mask_decoder]
    segfit train --slurm -e configs/sam2_demo.yaml launcher.slurm.nodes=2 launcher.slurm.gpus_per_node=8
    segfit evaluate -e configs/sam2_demo.yaml evaluate.max_clicks=20
    segfit inference -e configs/sam2_demo.yaml inference.input=photos/ inference.mode=automatic
    segfit inference -e configs/sam2_demo.yaml inference.input=a.jpg inference.mode=prompted "inference.points=[[120,80]]"
    segfit export -e configs/sam2_demo.yaml
    segfit serve -e configs/sam2_demo.yaml inference.checkpoint=runs/sam2_demo/checkpoints/last
    segfit convert sam2.1_hiera_small.pt hf_sam2.1_small/
    segfit consolidate runs/my_run/checkpoints/best
"""

from __future__ import annotations

import argparse
import importlib
import sys

from segfit import __version__

SPEC_TASKS = {
    "train": "fine-tune a model (auto-resumes from results_dir)",
    "evaluate": "metrics of a checkpoint (default: the run's best) on data.test or data.val",
    "inference": "run a checkpoint on images or videos: prompted masks, an instance map, tracked objects, boxes",
    "export": "write a checkpoint in exchange formats (Hugging Face directory, official .pt, ONNX)",
    "serve": "a local click-to-segment page: the base and the fine-tuned SAM 2 side by side",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segfit", description=__doc__.split("\n")[0], epilog="Examples:" + __doc__.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"segfit {__version__}")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, help_text in SPEC_TASKS.items():
        _add_spec_args(tasks.add_parser(name, help=help_text, description=help_text, allow_abbrev=False))
    tasks.choices["train"].add_argument("--slurm", action="store_true",
                                        help="submit the run as a SLURM job (launcher.slurm.*) and return")
    serve = tasks.choices["serve"]
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; others print a warning)")
    serve.add_argument("--port", type=int, default=8765)

    convert = tasks.add_parser("convert", help="official SAM 2 .pt <-> Hugging Face directory", allow_abbrev=False)
    convert.add_argument("src", help="an official .pt (→ HF directory) or an HF directory / .safetensors (→ official .pt)")
    convert.add_argument("dst", help="the output directory or .pt file")

    consolidate = tasks.add_parser("consolidate", help="an FSDP run's sharded checkpoint -> its model.safetensors",
                                   allow_abbrev=False)
    consolidate.add_argument("checkpoint", help="a checkpoint directory of an FSDP run (.../checkpoints/best)")

    data = tasks.add_parser("data", help="dataset tools: synth, check, extract-frames, prepare-tracking",
                            allow_abbrev=False)
    data_tasks = data.add_subparsers(dest="data_task", required=True, metavar="DATA_TASK")
    synth = data_tasks.add_parser("synth", help="write a synthetic dataset (demo, tests)", allow_abbrev=False)
    synth.add_argument("--kind", choices=["image", "video", "semantic", "instance", "panoptic", "tracking"],
                       default="image", help="image, video: instance masks (SAM 2); semantic, instance, panoptic: "
                                             "classes (Mask2Former); tracking: box sequences (SiamBAN)")
    synth.add_argument("--format", choices=["labpics", "coco", "sa1b", "davis", "ade", "coco_panoptic", "got10k"],
                       help="image: labpics (default), coco, sa1b; video: davis; semantic: ade (+ folders); instance: coco; "
                            "panoptic: coco_panoptic; tracking: got10k")
    synth.add_argument("--out", required=True, help="output folder (train/ and val/ inside)")
    synth.add_argument("--num-train", type=int, help="images (default 16), videos (default 4) or sequences (default 8)")
    synth.add_argument("--num-val", type=int, help="images (default 4), videos or sequences (default 2)")
    synth.add_argument("--size", help="HxW of the images (default 240x320) or frames (default 120x160)")
    synth.add_argument("--num-frames", type=int, default=8, help="frames per video")
    synth.add_argument("--seed", type=int, default=0)
    _add_spec_args(data_tasks.add_parser("check", help="validate the spec's dataset splits before training", allow_abbrev=False))
    extract = data_tasks.add_parser("extract-frames", help="video files -> JPEG frame folders (resumable)",
                                    allow_abbrev=False)
    extract.add_argument("videos", help="a video file, or a folder searched recursively for .mp4 .mov .avi .mkv .webm")
    extract.add_argument("--out", required=True, help="output folder: one <video>/00000.jpg ... folder per video")
    extract.add_argument("--every", type=int, default=1, help="keep frames 0, k, 2k, ... (SA-V: 4, as the official script)")
    extract.add_argument("--workers", type=int, default=1, help="videos extracted in parallel")
    extract.add_argument("--quality", type=int, default=95, help="JPEG quality")
    prepare = data_tasks.add_parser("prepare-tracking", help="sequence folders -> pysot crop511 + train.json "
                                    "(resumable)", allow_abbrev=False)
    prepare.add_argument("sequences", help="a folder of sequence folders (GOT-10k layout) or of class folders (LaSOT)")
    prepare.add_argument("--format", choices=["got10k", "lasot"], default="got10k")
    prepare.add_argument("--out", required=True, help="output folder: crop511/<sequence>/000000.00.x.jpg ... + train.json")
    prepare.add_argument("--workers", type=int, default=1, help="sequences cropped in parallel")
    prepare.add_argument("--quality", type=int, default=95, help="JPEG quality")
    return parser


def _add_spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--spec", required=True, help="spec YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, lists as a=[1,2]")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from segfit.data.records import DataError
    from segfit.engine.storage import StorageError
    from segfit.spec import SpecError, load_spec

    try:
        if args.task == "convert":
            from segfit.tasks import convert

            convert.run(args.src, args.dst)
        elif args.task == "consolidate":
            from segfit.tasks import consolidate

            consolidate.run(args.checkpoint)
        elif args.task == "data" and args.data_task == "synth":
            from segfit.tasks import data

            size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
            data.synth(args.out, args.kind, args.format, args.num_train, args.num_val, size, args.seed, args.num_frames)
        elif args.task == "data" and args.data_task == "prepare-tracking":
            from segfit.tasks import data

            return 0 if data.prepare_tracking(args.sequences, args.format, args.out, args.workers, args.quality) else 1
        elif args.task == "data" and args.data_task == "extract-frames":
            from segfit.tasks import data

            return 0 if data.extract_frames(args.videos, args.out, args.every, args.workers, args.quality) else 1
        else:
            spec = load_spec(args.spec, args.overrides)
            if args.task == "data":
                from segfit.tasks import data

                return 0 if all(report.ok for report in data.check(spec)) else 1
            from segfit.engine.host_memory import keep_freed_memory

            keep_freed_memory()  # models run in this process: reuse freed CPU memory instead of page-faulting it
            if args.task == "serve":
                from segfit.tasks import serve

                serve.run(spec, args.host, args.port)
                return 0
            task = "slurm" if args.task == "train" and args.slurm else args.task
            importlib.import_module(f"segfit.tasks.{task}").run(spec)
    except (SpecError, DataError, FileNotFoundError, ValueError, StorageError) as err:
        print(f"segfit {args.task}: error: {err}", file=sys.stderr)
        return 2
    return 0
