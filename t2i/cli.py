"""``t2i generate``: draw images from prompts with a trained text-to-image GAN.

    t2i generate --model runs/t2i/dfgan_birds --prompt "a small red bird with black wings" --n 8 --seed 0 --out samples/
    t2i generate --model runs/t2i/dfgan_birds --prompts-file prompts.txt --n 4 --out grid.png

--model is a trained model's ``final/`` folder (``scripts/train_t2i.py`` writes it) or the
run folder holding it. Prompts come from --prompt (repeatable) or --prompts-file (UTF-8,
one prompt per line; blank lines are skipped; a line that is not UTF-8 is an error naming
file, line and column).

--out DIR writes one PNG per image (0000.png, 0001.png, ... prompt-major: prompt 1's n
images first) and metadata.jsonl, one row per image:
``{"file_name": "0000.png", "text": PROMPT, "seed": S, "index": I, "prompt_index": P}``
(``index`` is the image's position in this run's noise, ``prompt_index`` its prompt's).
That is the generic folder format, so ``t2i eval fid|kid|all|faithfulness ... --fake DIR``
reads the images with their prompts. --out FILE.png writes one grid instead: a row per
prompt, a column per image (at most 1,024 images per grid).

Behaviour:
- the same model, prompts, --n, --seed, --truncation and device give byte-identical files;
  the noise is drawn on the CPU from --seed only (not from --batch-size);
- at most 10,000 images per run (prompts x --n), the pipeline's limit per call;
- an empty or whitespace-only prompt is an error; prompts of any length and script work:
  words the model's vocabulary lacks become <unk> and prompts longer than the text encoder
  reads are cut to their first words; both are printed as warnings on stderr (and listed
  under "warnings" with --json); the images are still generated;
- a non-empty --out folder, or an existing grid file, needs --overwrite (which replaces
  only the numbered PNGs and metadata.jsonl of a folder).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from imagetext.cliargs import positive_int, seed_int
from imagetext.errors import UserError

MAX_IMAGES = 10_000  # per run; equals t2i.gan.pipeline.MAX_PROMPTS (one pipeline call)
MAX_GRID_IMAGES = 1_024  # a bigger grid is an unwieldy multi-hundred-megapixel PNG: use a folder
MAX_WARNINGS_SHOWN = 10  # on stderr; --json lists all
GRID_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
OWNED = ["[0-9][0-9][0-9][0-9].png", "metadata.jsonl"]  # what --overwrite may replace in an --out folder


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number > 0")
    return v


def add_parser(subparsers: Any, name: str, help_text: str) -> None:
    p = subparsers.add_parser(name, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a trained model's final/ folder (or the run folder holding it)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", metavar="TEXT",
                     help="a prompt to draw (repeat for several)")
    src.add_argument("--prompts-file", type=Path, metavar="FILE",
                     help="UTF-8 text file, one prompt per line (blank lines skipped)")
    p.add_argument("--n", type=positive_int, default=1,
                   help=f"images per prompt (default 1; prompts x n at most {MAX_IMAGES:,})")
    p.add_argument("--seed", type=seed_int, default=0, help="noise seed (default 0); same seed, same images")
    p.add_argument("--truncation", type=_positive_float, default=None, metavar="T",
                   help="truncate the noise to [-T, T] (default: the model's own, from pipeline.json; none if unset)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the generator runs; auto = CUDA if present (default auto)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR|FILE.png",
                   help="a folder (one PNG per image + metadata.jsonl) or FILE.png (one grid: rows = prompts)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grid file, or the images and metadata.jsonl of a non-empty folder")
    p.add_argument("--json", action="store_true", help="print a JSON summary (files, prompts, seed, n, warnings)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_generate)


# ----------------------------------------------------------------------------- inputs


def read_prompts_file(path: Path) -> List[str]:
    """Prompts of ``path``: one per line, UTF-8 (a BOM or UTF-16 is accepted), blank lines skipped.

    Raises:
        UserError: missing, a folder, a line that is not UTF-8 (file, line, column), or no prompts.
    """
    from imagetext.data.records import CONVERT_HINT, decode_lines

    if not path.exists():
        raise UserError(f"--prompts-file {path}: no such file")
    if path.is_dir():
        raise UserError(f"--prompts-file {path}: is a folder, not a file")
    data = path.read_bytes()  # OSError (permissions) is reported by the CLI with the file name
    decoded = decode_lines(data, str(path))
    if decoded.bad:
        b = decoded.bad[0]
        more = f" (and {len(decoded.bad) - 1} more line(s))" if len(decoded.bad) > 1 else ""
        shown = " ".join(f"0x{x:02x}" for x in b.bad)
        raise UserError(f"--prompts-file {path}:{b.line}: not UTF-8 (byte {shown} at column {b.column}){more}; "
                        f"{CONVERT_HINT}")
    prompts = [text.replace("\ufeff", "").strip() for _, text in decoded.lines]
    prompts = [t for t in prompts if t]
    if not prompts:
        what = "is empty" if not data else f"has no prompts ({len(decoded.lines)} blank line(s))"
        raise UserError(f"--prompts-file {path}: {what}; write one prompt per line")
    return prompts


def _prompts(args: argparse.Namespace) -> List[str]:
    if args.prompts_file is not None:
        return read_prompts_file(args.prompts_file)
    out = []
    for i, p in enumerate(args.prompt, 1):
        if not p.strip():
            raise UserError(f"--prompt {i} is empty: give words to draw")
        out.append(p.strip())
    return out


def _check_count(n_prompts: int, n: int, grid: bool) -> None:
    total = n_prompts * n
    if total > MAX_IMAGES:
        raise UserError(f"{n_prompts} prompt(s) x --n {n} = {total:,} images; at most {MAX_IMAGES:,} per run "
                        "(split the prompts over several runs)")
    if grid and total > MAX_GRID_IMAGES:
        raise UserError(f"{total:,} images in one grid; at most {MAX_GRID_IMAGES:,} (give a folder as --out instead)")


def _check_out(out: Path, overwrite: bool) -> bool:
    """Whether --out is a grid file; refuses what cannot be written, without touching anything yet."""
    from imagetext.cliargs import check_output_file, prepare_output_dir

    suffix = out.suffix.lower()
    if suffix in GRID_SUFFIXES and not out.is_dir():
        if suffix != ".png":
            raise UserError(f"--out {out}: a grid is written as PNG; name it {out.with_suffix('.png')} "
                            "(or give a folder for one PNG per image)")
        check_output_file(out, "--out", suffix=".png")
        if out.exists() and not overwrite:
            raise UserError(f"--out {out}: exists; pass --overwrite to replace it")
        return True
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder (a grid must end in .png)")
    if not overwrite or not out.exists():
        prepare_output_dir(out, "--out", overwrite=False)  # refuses a non-empty folder; deletes nothing
    elif not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: folder is not writable")
    return False


def _other_kind(root: Path) -> Optional[str]:
    """What a folder without pipeline.json holds instead, if recognisable (for the error message)."""
    for d in (root, root / "final"):
        if (d / "matcher.json").is_file():
            return f"{d} holds an image-text matcher (matcher.json), not a text-to-image generator"
        if (d / "text_encoder").is_dir() and not (d / "generator").is_dir():
            return (f"{d} holds phase-1 encoders (text_encoder/, image_encoder/ from scripts/pretrain.py), "
                    "not a generator: train one with scripts/train_t2i.py and pass its final/ folder")
        cfg = d / "config.json"
        if cfg.is_file():
            try:
                fmt = json.loads(cfg.read_text(encoding="utf-8")).get("format")
            except (ValueError, AttributeError, OSError):
                fmt = None
            if fmt:
                return f"{d} holds a saved {fmt!r} model, not a text-to-image generator"
    return None


def load_pipeline(model: str, device: str) -> Any:
    """The trained pipeline at ``model`` on ``device``; UserError naming the folder and what is wrong."""
    from imagetext.metrics.engine import resolve_device

    root = Path(model)
    if not root.exists():
        raise UserError(f"--model {model}: no such folder (give a trained model's final/ folder or its run folder)")
    if not root.is_dir():
        raise UserError(f"--model {model}: is a file, not a folder (give a trained model's final/ folder)")
    if not (root / "pipeline.json").is_file() and not (root / "final" / "pipeline.json").is_file():
        other = _other_kind(root)
        if other:
            raise UserError(f"--model {model}: {other}")
    dev = resolve_device(device)
    from .gan.pipeline import T2IPipeline

    try:
        return T2IPipeline.from_pretrained(root, device=dev)
    except UserError as e:
        raise UserError(f"--model {model}: {e}") from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # e.g. a damaged text encoder vocabulary
        raise UserError(f"--model {model}: cannot be loaded ({str(e).splitlines()[0][:300] if str(e) else type(e).__name__})") from None


# ----------------------------------------------------------------------------- output


def _to_uint8(x: Any) -> Any:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 numpy (the pipeline's own rounding)."""
    import torch

    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _save_png(arr: Any, path: Path) -> None:
    """A PNG written through a temporary file, so an interrupted run leaves no half image."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    tmp.replace(path)


def _write_folder(out: Path, arr: Any, prompts: List[str], n: int, seed: int, overwrite: bool) -> List[str]:
    from imagetext.cliargs import prepare_output_dir, write_text_atomic

    prepare_output_dir(out, "--out", overwrite, owned=OWNED)
    out.mkdir(parents=True, exist_ok=True)
    files, rows = [], []
    for i, a in enumerate(arr):
        name = f"{i:04d}.png"
        _save_png(a, out / name)
        files.append(name)
        rows.append(json.dumps({"file_name": name, "text": prompts[i // n], "seed": seed, "index": i,
                                "prompt_index": i // n}, ensure_ascii=False))
    # metadata last: a folder with metadata.jsonl is complete
    write_text_atomic(out / "metadata.jsonl", "\n".join(rows) + "\n")
    return [str(out / f) for f in files]


def _write_grid(out: Path, arr: Any, rows: int, cols: int) -> List[str]:
    import numpy as np

    n, h, w, c = arr.shape
    grid = arr.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_png(np.ascontiguousarray(grid), out)
    return [str(out)]


def _generate(args: argparse.Namespace) -> int:
    prompts = _prompts(args)
    grid = _check_out(args.out, args.overwrite)
    _check_count(len(prompts), args.n, grid)
    pipe = load_pipeline(args.model, args.device)
    truncation = args.truncation if args.truncation is not None else pipe.info.get("truncation")
    total = len(prompts) * args.n
    warnings: List[str] = []
    x = pipe.generate_tensors(prompts, seed=args.seed, num_images=args.n, truncation=truncation,
                              batch_size=args.batch_size,
                              progress=not args.no_progress and total > args.batch_size, warnings=warnings)
    for w in warnings[:MAX_WARNINGS_SHOWN]:
        print(f"t2i generate: warning: {w}", file=sys.stderr)
    if len(warnings) > MAX_WARNINGS_SHOWN:
        print(f"t2i generate: warning: ... and {len(warnings) - MAX_WARNINGS_SHOWN} more (all listed with --json)",
              file=sys.stderr)
    arr = _to_uint8(x)
    if grid:
        files = _write_grid(args.out, arr, len(prompts), args.n)
    else:
        files = _write_folder(args.out, arr, prompts, args.n, args.seed, args.overwrite)
    summary: Dict[str, Any] = {
        "model": str(args.model), "out": str(args.out), "kind": "grid" if grid else "folder", "files": files,
        "prompts": prompts, "seed": args.seed, "n": args.n, "images": total, "truncation": truncation,
        "imsize": pipe.imsize, "device": str(pipe.device), "warnings": warnings,
    }
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        where = (f"one grid in {args.out} ({len(prompts)} row(s) x {args.n} column(s))" if grid
                 else f"{args.out}/ (with metadata.jsonl)")
        print(f"wrote {total} image(s) ({len(prompts)} prompt(s) x {args.n}, seed {args.seed}, "
              f"{pipe.imsize}x{pipe.imsize}) to {where}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from imagetext.cli import main

    sys.exit(main(["generate", *sys.argv[1:]]))
