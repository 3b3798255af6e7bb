"""The Gradio demo: Generate, Compare, Retrieve and About tabs over the bundled checkpoints.

    t2i demo                      # http://127.0.0.1:7860 (PORT=... or --port)
    make demo                     # installs the environment first if needed

Endpoints for ``gradio_client`` (every input but the first has a default)::

    client.predict("a red circle above a blue square", api_name="/generate")
    client.predict("a red circle above a blue square", api_name="/compare")
    client.predict("a small bird with a red crown", api_name="/retrieve")

The app only loads pipelines (:class:`t2i.gan.pipeline.T2IPipeline`) and galleries
(:class:`matching.gallery.Gallery`); all model code lives in the library. User mistakes come
back as a readable message (``gr.Error`` in the page, the same text to API clients), out-of-
range numbers are clamped with a note, and the only files read from a typed path are
images inside the folder the demo was started to browse (``--browse-root``).
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from imagetext.errors import UserError

from .models import ARMS, DemoModels

MAX_IMAGES = 16          # per generate call (and per arm in compare)
MAX_PROMPT_CHARS = 1_000  # longer prompts are cut here; the text encoders read far fewer words anyway
MAX_K = 32               # retrieval results per query
SEED_MAX = 2**31 - 1
DISPLAY_SIZE = 256       # generated images are 32 px: shown enlarged (nearest neighbour, so pixels stay honest)
MAX_FOLDER_IMAGES = 2_000
DEFAULT_CONCURRENCY = 4  # requests run at once; the rest wait in Gradio's queue
QUEUE_SIZE = 256

VARIANT_LABELS = {"dfgan": "DF-GAN", "galip": "GALIP", "ssagan": "SSA-GAN", "attngan": "AttnGAN", "dmgan": "DM-GAN"}
ARM_LABELS = {"baseline": "baseline", "scl": "+ contrastive (_scl)"}


# ---------------------------------------------------------------------------- input policy
def clamp_int(value: Any, lo: int, hi: int, name: str, notes: List[str], default: int) -> int:
    """``value`` as an int in [lo, hi]; a missing or non-numeric value takes ``default``; clamping is noted."""
    try:
        v = float(value)
        if math.isnan(v):
            raise ValueError
    except (TypeError, ValueError):
        notes.append(f"{name}: {value!r} is not a number; used {default}")
        return default
    if math.isinf(v):
        v = hi if v > 0 else lo
    iv = int(round(v))
    if iv < lo or iv > hi:
        notes.append(f"{name} {value} is out of range; used {min(max(iv, lo), hi)} (allowed {lo} to {hi})")
    return min(max(iv, lo), hi)


def clean_prompt(prompt: Any, notes: List[str], what: str = "prompt") -> str:
    """Strip and cap a prompt; an empty one is a :class:`UserError`."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError(f"the {what} is empty: type a few words")
    text = " ".join(prompt.split())
    if len(text) > MAX_PROMPT_CHARS:
        notes.append(f"the {what} has {len(text):,} characters; used the first {MAX_PROMPT_CHARS:,}")
        text = text[:MAX_PROMPT_CHARS]
    return text


def enlarge(img: Any, size: int = DISPLAY_SIZE) -> Any:
    from PIL import Image

    if img.width >= size:
        return img
    f = max(1, size // img.width)
    return img.resize((img.width * f, img.height * f), Image.NEAREST)


def grid(images: Sequence[Any], cols: Optional[int] = None) -> Any:
    """One image holding ``images`` in rows of ``cols``."""
    from PIL import Image

    cols = cols or min(len(images), 4)
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    out = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * w, (i // cols) * h))
    return out


def status(notes: Sequence[str], head: str = "") -> str:
    lines = [head] if head else []
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the handlers
class Demo:
    """The demo's handlers, independent of the UI (the tests call them directly too)."""

    def __init__(self, models: DemoModels, browse_root: Optional[Path] = None) -> None:
        self.models = models
        self.browse_root = Path(browse_root or os.getcwd()).resolve()
        self.tmp = Path(tempfile.mkdtemp(prefix="t2i-demo-"))
        # Gradio copies every returned file into its own cache, so the grids written here are
        # scratch: removed when the demo goes away or the process exits.
        weakref.finalize(self, shutil.rmtree, self.tmp, ignore_errors=True)
        self._n = 0
        self._lock = threading.Lock()

    def _tmpfile(self, suffix: str) -> Path:
        with self._lock:
            self._n += 1
            return self.tmp / f"{self._n:06d}{suffix}"

    def _variant(self, model: Any, notes: List[str]) -> str:
        variants = self.models.variants
        if not variants:
            raise UserError("no generators are bundled: run `make checkpoints`")
        if model not in variants:
            notes.append(f"model {model!r} is not bundled; used {variants[0]}")
            return variants[0]
        return model

    def _draw(self, variant: str, arm: str, prompt: str, seed: int, n: int, truncation: Optional[float],
              notes: List[str]) -> List[Any]:
        pipe = self.models.pipeline(variant, arm)
        said: List[str] = []
        images = pipe([prompt], seed=seed, num_images=n, truncation=truncation, warnings=said)
        notes.extend(w.replace("prompt 1", "the prompt", 1) for w in said)
        return images

    def generate(self, prompt: str, model: str = "dfgan", arm: str = "baseline", seed: float = 0,
                 n: float = 4, truncation: float = 0.0) -> Tuple[List[Tuple[Any, str]], str, str]:
        """Images of ``prompt`` by one bundled generator: (gallery, grid PNG path, status)."""
        notes: List[str] = []
        prompt = clean_prompt(prompt, notes)
        variant = self._variant(model, notes)
        if arm not in ARMS:
            notes.append(f"arm {arm!r} unknown; used baseline")
            arm = "baseline"
        seed = clamp_int(seed, 0, SEED_MAX, "seed", notes, 0)
        n = clamp_int(n, 1, MAX_IMAGES, "number of images", notes, 4)
        t = _truncation(truncation, notes)
        images = self._draw(variant, arm, prompt, seed, n, t, notes)
        big = [enlarge(im) for im in images]
        path = self._tmpfile(".png")
        grid(big).save(path)
        e = self.models.entry(variant, arm)
        head = (f"**{VARIANT_LABELS.get(variant, variant)}, {ARM_LABELS[arm]}**: {n} image(s), seed {seed}, "
                f"{images[0].width} px; {e.steps} training steps on `{e.world}`, FID {_fmt(e.metrics.get('fid'))}")
        return [(im, f"seed {seed}, image {i}") for i, im in enumerate(big)], str(path), status(notes, head)

    def compare(self, prompt: str, model: str = "dfgan", seed: float = 0,
                n: float = 4) -> Tuple[List[Any], List[Any], str]:
        """The same prompt and noise through the baseline and the ``_scl`` generator of one variant."""
        notes: List[str] = []
        prompt = clean_prompt(prompt, notes)
        variant = self._variant(model, notes)
        seed = clamp_int(seed, 0, SEED_MAX, "seed", notes, 0)
        n = clamp_int(n, 1, MAX_IMAGES, "number of images", notes, 4)
        out, rows = [], []
        for arm in ARMS:
            if (variant, arm) not in self.models.generators:
                out.append([])
                rows.append(f"| {ARM_LABELS[arm]} | not bundled | | | |")
                continue
            images = self._draw(variant, arm, prompt, seed, n, None, notes if arm == "baseline" else [])
            out.append([enlarge(im) for im in images])
            e = self.models.entry(variant, arm)
            rows.append(f"| {ARM_LABELS[arm]} | {_fmt(e.metrics.get('fid'))} | {_fmt(e.metrics.get('faithfulness'), 3)} "
                        f"| {_fmt(e.metrics.get('r_precision'), 3)} | {e.steps} |")
        table = "\n".join([f"**{VARIANT_LABELS.get(variant, variant)}**, seed {seed}: same noise, same prompt.", "",
                           "| arm | FID (lower is better) | faithfulness | R-precision | steps |",
                           "|---|---|---|---|---|", *rows])
        return out[0], out[1], status(notes, table)

    def _source(self, source: str, folder_gallery: Any) -> Any:
        if source == "my folder":
            if folder_gallery is None:
                raise UserError("no folder indexed yet: type a folder under 'Your folder' and press Index")
            return folder_gallery
        if source not in self.models.galleries:
            raise UserError(f"gallery {source!r} unknown; choose one of {', '.join(self.models.galleries)} or 'my folder'")
        return self.models.gallery(source)

    def retrieve(self, query: str, source: str = "scenes", k: float = 8,
                 folder_gallery: Any = None) -> Tuple[List[Tuple[Any, str]], str]:
        """Text -> the ``k`` nearest images of a bundled gallery (or the indexed folder)."""
        notes: List[str] = []
        query = clean_prompt(query, notes, what="query")
        g = self._source(source, folder_gallery)
        k = clamp_int(k, 1, MAX_K, "k", notes, 8)
        if k > len(g):
            notes.append(f"k {k} is more than the gallery's {len(g)} image(s); showing all")
        hits = g.search_text(query, k)
        shown = [(enlarge(g.open_image(i), 128), f"{s:.3f}  {Path(i).name}") for i, s in hits]
        return shown, status(notes, f"{len(hits)} nearest of {len(g)} images in **{source}** (cosine similarity)")

    def retrieve_image(self, image: Any, source: str = "scenes", k: float = 5,
                       folder_gallery: Any = None) -> Tuple[str, List[Tuple[Any, str]]]:
        """Image file -> the ``k`` nearest captions (bundled galleries) and the nearest gallery images."""
        from matching.gallery import load_query_image

        notes: List[str] = []
        if not image:
            raise UserError("no image: upload a PNG or JPEG first")
        img = load_query_image(image if isinstance(image, (str, Path)) else getattr(image, "name", image))
        g = self._source(source, folder_gallery)
        k = clamp_int(k, 1, MAX_K, "k", notes, 5)
        lines = []
        if g.caption_index is not None:
            lines = [f"{j + 1}. {t}  ({s:.3f})" for j, (t, s) in enumerate(g.search_image(img, k))]
        else:
            notes.append("this gallery has no captions: showing similar images only")
        similar = [(enlarge(g.open_image(i), 128), f"{s:.3f}") for i, s in g.similar_images(img, k)]
        return status(notes, "\n".join(lines) or "(no captions)"), similar

    def index_folder(self, folder: str, source: str = "scenes", progress: Any = None) -> Tuple[Any, str]:
        """Index the images of ``folder`` (inside the browse root) with the matcher of gallery ``source``."""
        from matching.gallery import Gallery

        if not isinstance(folder, str) or not folder.strip():
            raise UserError("type a folder to index")
        p = Path(folder.strip()).expanduser()
        p = (p if p.is_absolute() else self.browse_root / p).resolve()
        if p != self.browse_root and self.browse_root not in p.parents:
            raise UserError(f"{folder.strip()}: outside the folder this demo may read ({self.browse_root}); "
                            "start it with `t2i demo --browse-root DIR` to index elsewhere")
        base = self.models.gallery(source if source in self.models.galleries else next(iter(self.models.galleries)))
        cb = (lambda d, n: progress(d / n, desc=f"indexing {d}/{n}")) if progress is not None else None
        g = Gallery.from_folder(p, base.model, image_size=base.image_size, max_images=MAX_FOLDER_IMAGES, progress=cb)
        return g, status(g.notes, f"indexed {len(g)} image(s) of `{p}`: choose **my folder** to search them")


def _truncation(value: Any, notes: List[str]) -> Optional[float]:
    try:
        t = float(value)
    except (TypeError, ValueError):
        notes.append(f"truncation {value!r} is not a number; used none")
        return None
    if not math.isfinite(t) or t <= 0:
        if t < 0 or not math.isfinite(t):
            notes.append(f"truncation {value} is out of range; used none")
        return None
    if t > 3:
        notes.append(f"truncation {t} is out of range; used 3.0")
        t = 3.0
    return max(t, 0.05)


def _fmt(x: Any, nd: int = 1) -> str:
    return "n/a" if x is None else f"{float(x):.{nd}f}"


# ---------------------------------------------------------------------------- the UI
def theme() -> Any:
    """Gradio's default look with local fonts only: the stock theme fetches web fonts, and the demo
    must open the same on a machine without internet."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])


def about_markdown(models: DemoModels) -> str:
    m = models.manifest
    rows = []
    for (v, a), e in models.generators.items():
        rows.append(f"| {VARIANT_LABELS.get(v, v)} | {ARM_LABELS[a]} | {e.world} | {e.steps} | {e.seed} | "
                    f"{_fmt(e.metrics.get('fid'))} | {_fmt(e.metrics.get('faithfulness'), 3)} | "
                    f"{_fmt(e.metrics.get('r_precision'), 3)} |")
    grows = []
    for w, e in models.galleries.items():
        mt = e.metrics
        am = e.info.get("anchor_metrics") or {}
        grows.append(f"| {w} | {e.info.get('images', '?')} | {e.info.get('matcher', '')} | {_fmt(mt.get('rsum'))} | "
                     f"{_fmt(am.get('rsum'))} | {_fmt(mt.get('i2t_r1'))} | {_fmt(mt.get('t2i_r1'))} |")
    ref = m.get("reference", {})
    return "\n".join([
        "## What this is",
        "Text-to-image GANs (DF-GAN, GALIP, SSA-GAN, AttnGAN, DM-GAN) trained with and without the two-branch",
        "contrastive term (`_scl`: the same generator and noise, two captions of one image, pulled together), and",
        "an image-text matcher trained with Deep Boosting Learning, all on the project's synthetic worlds",
        "(`scenes`: COCO-like objects; `birds`: CUB-like species), small enough to train on a laptop CPU.",
        "These are demo models, briefly trained: the images are 32 px and rough. The numbers below are measured",
        "on 500 test prompts with the `synth` feature extractor (lower FID is better; real test images score "
        f"{_fmt(ref.get('real_fid'))}).",
        "",
        "| model | arm | world | steps | seed | FID | faithfulness | R-precision |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "### Retrieval galleries (DBL-trained matchers)",
        "Recall (%) of each matcher on its world's 500 test images (the gallery shows the first of them), beside",
        "the anchor it was boosted from. Chance is an rSum of about 6.4 on 500 images (R@K = K/500 both ways);",
        "these briefly trained matchers sit a few times above it: expect the right kind of image near the top,",
        "not the exact one.",
        "",
        "| gallery | images | matcher | rSum | its anchor's rSum | i2t R@1 | t2i R@1 |",
        "|---|---|---|---|---|---|---|",
        *grows,
        "",
        "### Train on real data",
        "With CUB-200 or MS-COCO on disk (see docs/DATA.md):",
        "```",
        "python scripts/pretrain.py --config configs/pretrain/cub.yaml data.root=/data/birds output_dir=runs/pretrain/cub",
        "python scripts/train_t2i.py --config configs/t2i/dfgan_cub_scl.yaml data.root=/data/birds encoders.path=runs/pretrain/cub",
        "python scripts/train_matching.py --config configs/matching/coco.yaml data.root=/data/coco",
        "t2i demo --models DIR     # a folder laid out like app/checkpoints, with its manifest.json",
        "```",
        f"Checkpoints: `{models.root}` (made by `{m.get('made_by', 'make checkpoints')}`).",
    ])


def build_app(models: DemoModels, browse_root: Optional[Path] = None, concurrency: int = DEFAULT_CONCURRENCY) -> Any:
    """The Gradio Blocks app (queued, ``concurrency`` requests at a time)."""
    import gradio as gr

    demo = Demo(models, browse_root)

    def guard(fn: Any) -> Any:
        # a user mistake is a readable message in the page (and to API clients), never a traceback
        @functools.wraps(fn)  # keeps the signature: Gradio names the API parameters from it
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except UserError as e:
                raise gr.Error(str(e), print_exception=False) from None
        return wrapped

    variants = models.variants
    choices = [(VARIANT_LABELS.get(v, v), v) for v in variants]
    default_v = variants[0] if variants else None
    worlds = list(models.galleries)
    examples = models.examples[:8]

    with gr.Blocks(title="t2i toolkit demo", analytics_enabled=False) as app:
        gr.Markdown("# Text-to-image GANs with contrastive learning, and DBL retrieval\n"
                    "Small models trained on the project's synthetic worlds, bundled with the code.")
        folder_state = gr.State(None)
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    g_prompt = gr.Textbox(label="Prompt", value=examples[0] if examples else "", lines=2,
                                          elem_id="gen-prompt")
                    g_model = gr.Dropdown(choices, value=default_v, label="Model")
                    g_arm = gr.Radio([(ARM_LABELS[a], a) for a in ARMS], value="baseline", label="Training")
                    with gr.Row():
                        g_seed = gr.Number(value=0, precision=0, label="Seed")
                        g_n = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
                    g_trunc = gr.Slider(0, 3, value=0, step=0.1, label="Truncation (0 = off)")
                    g_btn = gr.Button("Generate", variant="primary", elem_id="gen-button")
                    if examples:
                        gr.Examples(examples, inputs=[g_prompt], label="Example prompts (the synthetic grammar)")
                with gr.Column(scale=2):
                    g_out = gr.Gallery(label="Images", columns=4, elem_id="gen-gallery", format="png", height="auto")
                    g_file = gr.File(label="Download the grid (PNG)")
                    g_status = gr.Markdown(elem_id="gen-status")
            g_btn.click(guard(demo.generate), [g_prompt, g_model, g_arm, g_seed, g_n, g_trunc],
                        [g_out, g_file, g_status], api_name="generate")
            g_prompt.submit(guard(demo.generate), [g_prompt, g_model, g_arm, g_seed, g_n, g_trunc],
                            [g_out, g_file, g_status], api_visibility="private")
        with gr.Tab("Compare"):
            with gr.Row():
                c_prompt = gr.Textbox(label="Prompt", value=examples[1] if len(examples) > 1 else "", scale=3)
                c_model = gr.Dropdown(choices, value=default_v, label="Model", scale=1)
                c_seed = gr.Number(value=0, precision=0, label="Seed", scale=1)
                c_n = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images", scale=1)
            c_btn = gr.Button("Compare", variant="primary", elem_id="cmp-button")
            with gr.Row():
                c_base = gr.Gallery(label="baseline", columns=4, format="png", height="auto")
                c_scl = gr.Gallery(label="+ contrastive (_scl)", columns=4, format="png", height="auto")
            c_status = gr.Markdown()
            c_btn.click(guard(demo.compare), [c_prompt, c_model, c_seed, c_n], [c_base, c_scl, c_status],
                        api_name="compare")
        with gr.Tab("Retrieve"):
            with gr.Row():
                r_query = gr.Textbox(label="Text query", value=examples[2] if len(examples) > 2 else "", scale=3,
                                     elem_id="ret-query")
                r_source = gr.Dropdown(worlds + ["my folder"], value=worlds[0] if worlds else "my folder",
                                       label="Gallery", scale=1)
                r_k = gr.Slider(1, MAX_K, value=8, step=1, label="k", scale=1)
            r_btn = gr.Button("Search images", variant="primary", elem_id="ret-button")
            r_out = gr.Gallery(label="Nearest images", columns=8, elem_id="ret-gallery", format="png", height="auto")
            r_status = gr.Markdown()
            r_btn.click(guard(demo.retrieve), [r_query, r_source, r_k, folder_state], [r_out, r_status],
                        api_name="retrieve")
            gr.Markdown("### Image -> captions")
            with gr.Row():
                r_image = gr.File(label="Query image", file_types=["image"], type="filepath")
                r_caps = gr.Markdown()
            r_ibtn = gr.Button("Search captions")
            r_similar = gr.Gallery(label="Similar gallery images", columns=8, format="png", height="auto")
            r_ibtn.click(guard(demo.retrieve_image), [r_image, r_source, r_k, folder_state], [r_caps, r_similar],
                         api_name="retrieve_image")
            gr.Markdown(f"### Your folder\nImages under `{demo.browse_root}` (the folder the demo was started in, "
                        "or `--browse-root`), indexed with the matcher of the chosen gallery.")
            with gr.Row():
                f_path = gr.Textbox(label="Folder (relative to it, or absolute inside it)", scale=3)
                f_btn = gr.Button("Index", scale=1)
            f_status = gr.Markdown()

            def index(folder: str, source: str, progress: Any = gr.Progress()) -> Tuple[Any, str]:
                return demo.index_folder(folder, source, progress)

            f_btn.click(guard(index), [f_path, r_source], [folder_state, f_status], api_name="index_folder")
        with gr.Tab("About"):
            gr.Markdown(about_markdown(models))
    app.queue(default_concurrency_limit=max(1, int(concurrency)), max_size=QUEUE_SIZE)
    app.demo_handlers = demo  # for tests and the benchmark
    return app
