"""The Gradio demo, live: `t2i demo` serving the bundled checkpoints, called through gradio_client
and driven in Debian's headless Chromium with Playwright; the manifest's checksums.

One server for the module (started by the real CLI on a free port, stopped at the end).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("T2I_DEMO_MODELS", ROOT / "app" / "checkpoints"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PROMPT = "a red bell over a blue ball"

pytestmark = pytest.mark.skipif(not (MODELS / "manifest.json").is_file(),
                                reason=f"{MODELS}/manifest.json missing (make checkpoints)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browse_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    pics = root / "pics"
    pics.mkdir()
    thumbs = sorted((MODELS / "retrieval").glob("*/thumbs/*.png"))[:6]
    for i, p in enumerate(thumbs):
        shutil.copy(p, pics / f"{i}.png")
    (pics / "notes.png").write_text("not an image")
    outside = tmp_path_factory.mktemp("outside")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside / "secret.png")
    os.symlink(outside / "secret.png", pics / "link.png")  # a link leaving the folder: never read
    return root


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """This module's temporary folder, for the server and the client alike.

    gradio_client downloads every output through an empty ``<tempdir>/<40 hex>`` folder that it never
    removes (146 of them per run of this module), and the server keeps its cache under the temp dir:
    both stay inside pytest's own tmp tree, which pytest prunes.
    """
    d = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(d))
        yield d


@pytest.fixture(scope="module")
def server(browse_root, scratch):
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
           "TMPDIR": str(scratch), "GRADIO_TEMP_DIR": str(scratch / "gradio")}
    proc = subprocess.Popen([sys.executable, "-m", "imagetext.cli", "demo", "--port", str(port), "--models", str(MODELS),
                             "--browse-root", str(browse_root)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, lines = None, []
    deadline = time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "serving" in line and "http://" in line:
            url = f"http://127.0.0.1:{port}/"
            break
    if url is None:
        proc.kill()
        pytest.fail("t2i demo did not start:\n" + "".join(lines[-30:]))
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def _image(item) -> np.ndarray:
    path = item["image"] if isinstance(item, dict) else item
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def _not_blank(arr: np.ndarray) -> bool:
    return float(arr.std()) > 2.0


def test_manifest_checksums_match_the_files():
    from app.models import DemoModels, sha256_file

    models = DemoModels(MODELS)
    files = models.manifest["files"]
    assert files, "the manifest lists no files"
    assert models.verify() == []
    listed = {f["path"] for f in files}
    on_disk = {str(p.relative_to(MODELS)) for p in MODELS.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk  # nothing unlisted, nothing missing
    for f in files:
        assert {"path", "sha256", "variant", "world", "steps", "seed", "fid"} <= set(f)
    assert sum((MODELS / f["path"]).stat().st_size for f in files) <= 40 * 2**20
    one = files[0]
    assert sha256_file(MODELS / one["path"]) == one["sha256"]


def test_generate_with_the_prompt_alone(client):
    images, grid_file, status = client.predict(PROMPT, api_name="/generate")
    assert len(images) == 4
    arrs = [_image(i) for i in images]
    assert all(_not_blank(a) for a in arrs)
    assert Image.open(grid_file).size[0] >= 4 * 32
    assert "FID" in status


def test_generate_is_deterministic_per_seed(client):
    a = client.predict(PROMPT, seed=3, n=2, api_name="/generate")[0]
    b = client.predict(PROMPT, seed=3, n=2, api_name="/generate")[0]
    c = client.predict(PROMPT, seed=4, n=2, api_name="/generate")[0]
    assert np.array_equal(_image(a[0]), _image(b[0]))
    assert not np.array_equal(_image(a[0]), _image(c[0]))


def test_compare_with_the_prompt_alone(client):
    base, scl, table = client.predict(PROMPT, api_name="/compare")
    assert len(base) == 4 and "baseline" in table
    manifest = json.loads((MODELS / "manifest.json").read_text())
    first = manifest["generators"][0]["variant"]
    if any(g["variant"] == first and g["arm"] == "scl" for g in manifest["generators"]):
        assert len(scl) == 4
        assert not np.array_equal(_image(base[0]), _image(scl[0]))  # two different generators, same noise


def test_retrieve_with_the_query_alone(client):
    images, status = client.predict("a small red bird", api_name="/retrieve")
    assert len(images) == 8
    scores = [float(i["caption"].split()[0]) for i in images]
    assert scores == sorted(scores, reverse=True)
    assert "nearest" in status


def test_retrieve_image_gives_captions(client):
    from gradio_client import handle_file

    thumb = sorted((MODELS / "retrieval").glob("*/thumbs/*.png"))[0]
    world = thumb.parts[-3]
    caps, similar = client.predict(handle_file(str(thumb)), world, 3, api_name="/retrieve_image")
    assert caps.startswith("1. ")
    assert len(similar) == 3
    assert float(similar[0]["caption"]) > 0.99  # the image itself is in the gallery


@pytest.mark.parametrize("prompt, expect", [
    ("x" * 10_000, "used the first 1,000"),
    ("🙂🎉 ✨", "no words (only symbols)"),
    ("Ζεύς 漢字 кошка", "none of its words"),
    ("qwzx vbnm plokij", "none of its words"),
])
def test_odd_prompts_give_images_and_a_note(client, prompt, expect):
    images, _, status = client.predict(prompt, n=1, api_name="/generate")
    assert len(images) == 1
    assert expect in status


def _app_error(client, *args, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        client.predict(*args, **kwargs)
    return str(e.value)


def test_empty_prompt_and_query_are_readable_errors(client):
    assert "empty" in _app_error(client, "   ", api_name="/generate")
    assert "empty" in _app_error(client, "", api_name="/compare")
    assert "empty" in _app_error(client, "", api_name="/retrieve")


def test_out_of_range_numbers(client):
    assert "maximum" in _app_error(client, PROMPT, n=99, api_name="/generate")
    assert "minimum" in _app_error(client, PROMPT, n=0, api_name="/generate")
    _, _, status = client.predict(PROMPT, seed=-5, n=1, api_name="/generate")
    assert "seed -5 is out of range" in status


def test_bad_uploads(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "fake.png"
    bad.write_text("hello, not pixels")
    assert "not an image" in _app_error(client, handle_file(str(bad)), api_name="/retrieve_image")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (7000, 7000), (9, 9, 9)).save(huge)  # 49 MP: refused before decoding
    assert "too large" in _app_error(client, handle_file(str(huge)), api_name="/retrieve_image")


def test_folder_indexing_stays_inside_the_browse_root(client, browse_root):
    assert "outside the folder" in _app_error(client, "/etc", api_name="/index_folder")
    assert "outside the folder" in _app_error(client, "../", api_name="/index_folder")
    status = client.predict("pics", api_name="/index_folder")
    assert "indexed 6 image(s)" in status
    assert "1 link(s) pointing outside" in status and "1 unreadable" in status
    images, status = client.predict("a small red bird", "my folder", 3, api_name="/retrieve")
    assert len(images) == 3 and "my folder" in status


def test_fifty_concurrent_generate_calls_complete(server):
    from gradio_client import Client

    c = Client(server, verbose=False)
    jobs = [c.submit(f"{PROMPT} {i}", seed=i, n=1, api_name="/generate") for i in range(50)]
    results = [j.result(timeout=300) for j in jobs]
    assert len(results) == 50 and all(len(r[0]) == 1 for r in results)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make browser)")
def test_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server, wait_until="domcontentloaded")
            page.locator("#gen-prompt textarea").fill(PROMPT)
            page.locator("#gen-button").click()
            img = page.locator("#gen-gallery img").first
            img.wait_for(timeout=60_000)
            page.wait_for_function("() => { const i = document.querySelector('#gen-gallery img'); "
                                   "return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
            img.screenshot(path=str(tmp_path / "generated.png"))
            page.screenshot(path=str(tmp_path / "generate_tab.png"), full_page=True)
            assert _not_blank(np.asarray(Image.open(tmp_path / "generated.png").convert("RGB"), dtype=np.float32))

            page.get_by_role("tab", name="Retrieve").click()
            page.locator("#ret-query textarea").fill("a small red bird")
            page.locator("#ret-button").click()
            page.wait_for_function("() => { const i = document.querySelectorAll('#ret-gallery img'); "
                                   "return i.length >= 8 && Array.from(i).every(x => x.complete && x.naturalWidth > 0); }",
                                   timeout=60_000)
            page.locator("#ret-gallery img").first.screenshot(path=str(tmp_path / "retrieved.png"))
            page.screenshot(path=str(tmp_path / "retrieve_tab.png"), full_page=True)
            assert _not_blank(np.asarray(Image.open(tmp_path / "retrieved.png").convert("RGB"), dtype=np.float32))

            page.get_by_role("tab", name="Generate").click()
            page.locator("#gen-prompt textarea").fill("")
            page.locator("#gen-button").click()
            page.get_by_text("the prompt is empty").first.wait_for(timeout=30_000)  # a message, not a traceback
        finally:
            browser.close()
