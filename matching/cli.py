"""``t2i index build`` and ``t2i index search``: a FAISS gallery of a trained matcher's image embeddings.

    t2i index build --model runs/matching/birds_anchor --images dataset:birds:test --out gallery/
    t2i index search --index gallery/ --text "a small red bird with a long tail" -k 5 --json
    t2i index search --index gallery/ --image query.png -k 10

The index remembers the model that built it (path, format, dimension, a hash of its
weights); ``search`` embeds the query with that model (or ``--model``) and refuses a
model whose embeddings do not fit the index. JSON output:
``{"results": [{"image": ID, "score": cosine}, ...]}``, scores descending.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from imagetext.cliargs import int_range, nonneg_int, positive_int


def add_parser(subparsers: Any, name: str, help_text: str) -> None:
    group = subparsers.add_parser(name, help=help_text, description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(_group_parser=group)
    sub = group.add_subparsers(dest="index_cmd", metavar="SUBCOMMAND")

    p = sub.add_parser("build", help="embed a gallery of images with a matcher and save a search index",
                       description="Embed every image of --images with the matcher --model and write a verified index to --out.")
    p.add_argument("--model", required=True, metavar="DIR", help="a trained matcher folder (or its run folder)")
    p.add_argument("--images", required=True, metavar="INPUT", help="a folder of images or dataset:NAME:SPLIT[:N]")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="index folder to write (refused if not empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index in --out")
    p.add_argument("--kind", default="auto", choices=["auto", "flat", "hnsw", "ivf"],
                   help="auto: exact up to 50,000 images, HNSW above (default auto)")
    p.add_argument("--size", type=int_range(16, 1024), default=64, help="side images are resized to for the matcher (default 64)")
    p.add_argument("--data-root", metavar="DIR", help="root folder for dataset:cub / coco / karpathy / folder inputs")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the matcher runs (default auto)")
    p.add_argument("--workers", type=nonneg_int, default=None, metavar="N", help="data-loader workers (default: by device)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_build)

    q = sub.add_parser("search", help="the gallery images nearest to a text or an image",
                       description="Embed the query with the index's matcher and print the k nearest gallery images.")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", metavar="TEXT", help="a caption to search for")
    what.add_argument("--image", type=Path, metavar="FILE", help="an image to search with")
    q.add_argument("--index", required=True, type=Path, metavar="DIR", help="a folder written by t2i index build")
    q.add_argument("-k", type=positive_int, default=10, help="results to return (default 10; at most the gallery size)")
    q.add_argument("--model", metavar="DIR", help="the matcher to embed the query (default: the one that built the index)")
    q.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the index files (sizes are still checked)")
    q.add_argument("--json", action="store_true", help='print {"results": [{"image", "score"}, ...]}')
    q.set_defaults(func=_search)


def _model_info(model_dir: str, model: Any, size: int) -> Dict[str, Any]:
    from imagetext.encoders.weights import sha256_file

    folder = Path(model_dir) if (Path(model_dir) / "matcher.json").is_file() else Path(model_dir) / "final"
    heads = folder / "heads.safetensors"
    return {"path": str(folder.resolve()), "format": json.loads((folder / "matcher.json").read_text()).get("format"),
            "name": getattr(model, "name", None), "embed_dim": int(model.embed_dim), "image_size": size,
            "heads_sha256": sha256_file(heads) if heads.is_file() else None}


def _embedding_model(model_dir: str) -> Any:
    """The matcher in ``model_dir``, refused with a clear message if it cannot embed (an interaction model)."""
    from .gallery import load_matcher

    return load_matcher(model_dir, "--model")


def _build(args: argparse.Namespace) -> int:
    from imagetext.cliargs import prepare_output_dir
    from imagetext.metrics.engine import EmbeddingExtractor, extract
    from imagetext.metrics.inputs import resolve_input

    from .index import SearchIndex

    prepare_output_dir(args.out, "--out", args.overwrite)
    model = _embedding_model(args.model)
    images = resolve_input(args.images, args, what="--images")
    r = extract(EmbeddingExtractor(model, args.size), images.source(), batch_size=args.batch_size, keep_features=True,
                progress=not args.no_progress, desc=f"embedding {args.images}", device=args.device, num_workers=args.workers)
    if images.split is not None:
        ids = [str(s.image_path) if s.image_path is not None else s.key for s in images.split.samples]
    else:
        ids = [str(p) for p in images.paths]
    index = SearchIndex.build(r.features, ids, kind=args.kind, model_info=_model_info(args.model, model, args.size),
                              progress=not args.no_progress)
    index.save(args.out)
    summary = {"index": str(args.out), "images": len(index), "dim": index.dim, "kind": index.kind,
               "model": args.model, "inputs": images.summary(), "notes": list(index.notes)}
    for note in index.notes:
        print(f"t2i index: note: {note}", file=sys.stderr)
    if summary["inputs"]["skipped"]:
        print(f"t2i index: note: {args.images}: {summary['inputs']['skipped']} item(s) skipped (named in --json)",
              file=sys.stderr)
    print(json.dumps(summary, indent=2) if args.json else
          f"indexed {len(index)} images ({index.kind}, {index.dim}-d) from {args.images} into {args.out}")
    return 0


def _query_embedding(args: argparse.Namespace, model: Any, size: int) -> Any:
    from imagetext.data.images import open_rgb
    from imagetext.errors import UserError

    from .gallery import embed_pil_images, embed_texts

    if args.text is not None:
        if not args.text.strip():
            raise UserError("--text is empty: give words to search for")
        return embed_texts(model, [args.text.strip()])
    img, _ = open_rgb(args.image)
    return embed_pil_images(model, [img], size)


def _search(args: argparse.Namespace) -> int:
    from imagetext.errors import UserError

    from .index import SearchIndex

    index = SearchIndex.load(args.index, verify=not args.no_verify)
    info = index.model_info or {}
    model_dir = args.model or info.get("path")
    if not model_dir:
        raise UserError(f"--index {args.index}: does not record its model; pass --model DIR")
    model = _embedding_model(model_dir)
    if int(model.embed_dim) != index.dim:
        raise UserError(f"--model {model_dir}: gives {model.embed_dim}-d embeddings but the index holds {index.dim}-d "
                        "ones (built by another model)")
    if args.model is not None and info.get("heads_sha256"):
        mine = _model_info(model_dir, model, 0).get("heads_sha256")
        if mine != info["heads_sha256"]:
            print(f"t2i index: warning: --model {model_dir} is not the model that built the index ({info.get('path')}): "
                  "its weights differ, so the scores are meaningful only if both embed into the same space",
                  file=sys.stderr)
    query = _query_embedding(args, model, int(info.get("image_size") or 64))
    hits = index.search(query, k=args.k)[0]
    results: List[Dict[str, Any]] = [{"image": i, "score": float(s)} for i, s in hits]
    if args.json:
        print(json.dumps({"query": args.text if args.text is not None else str(args.image), "results": results}, indent=2))
    else:
        for rank, r in enumerate(results, 1):
            print(f"{rank:3d}  {r['score']:.4f}  {r['image']}")
    return 0
