"""Smoke test of scripts/benchmark_train_speed.py: a tiny configuration, the JSON's keys and positive numbers.

No timing assertions (the numbers depend on the machine and its load).
"""
import json

from cli_harness import load_script


def _load_script():
    return load_script("benchmark_train_speed")


def test_benchmark_train_speed_tiny(tmp_path, capsys):
    mod = _load_script()
    out = tmp_path / "speed.json"
    res = mod.main(["--imsize", "16", "--nf", "4", "--noise-dim", "8", "--batch", "4", "--steps", "1",
                    "--repeats", "1", "--warmup", "0", "--modes", "reference,reference-bf16,ours,ours-no-fused-adam,ours-unfolded-upconv",
                    "--gen-repeats", "2",
                    "--device", "cpu", "--threads", "1", "--json", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(out.read_text())
    assert printed == written == json.loads(json.dumps(res))

    for key in ("machine", "config", "modes", "speedup_vs_reference", "generation", "note", "command"):
        assert key in written
    assert written["machine"]["cpu_count"] >= 1 and written["machine"]["torch"]
    assert written["config"]["imsize"] == 16 and written["config"]["batch"] == 4
    assert set(written["modes"]) == {"reference", "reference-bf16", "ours", "ours-no-fused-adam", "ours-unfolded-upconv"}
    for mode, e in written["modes"].items():
        for k in ("img_per_s_median", "img_per_s_min", "img_per_s_max", "step_ms_median", "params_g", "params_d"):
            assert e[k] > 0, (mode, k)
        assert e["peak_mem_mb"] >= 0
        assert e["img_per_s_min"] <= e["img_per_s_median"] <= e["img_per_s_max"]
    # the same modules in both modes
    assert written["modes"]["reference"]["params_g"] == written["modes"]["ours"]["params_g"]
    assert written["modes"]["reference"]["params_d"] == written["modes"]["ours"]["params_d"]
    assert written["speedup_vs_reference"]["reference"] == 1.0
    assert written["speedup_vs_reference"]["ours"] > 0
    # the target's denominator: the faster of the two reference precisions, by median img/s
    best = written["reference_best"]
    assert best == max(("reference", "reference-bf16"), key=lambda m: written["modes"][m]["img_per_s_median"])
    assert written["speedup_vs_reference_best"][best] == 1.0
    assert written["modes"]["reference-bf16"]["settings"]["precision"] == "bf16 autocast"
    for name in ("ours_ema", "reference_g"):
        gen = written["generation"][name]
        assert gen["batch1_ms_median"] > 0 and gen["batch64_img_per_s_median"] > 0
    ref, ours = written["modes"]["reference"]["settings"], written["modes"]["ours"]["settings"]
    assert ref["block_order"].startswith("published") and ours["block_order"].startswith("library")
    assert ref["adam"].startswith("plain") and not ref["channels_last"] and ref["precision"] == "fp32"
    assert ours["adam"] == "fused" and ours["channels_last"]
    assert written["modes"]["ours-no-fused-adam"]["settings"]["adam"].startswith("plain")
    assert ours["upsample_conv"].startswith("folded")
    assert written["modes"]["ours-unfolded-upconv"]["settings"]["upsample_conv"].startswith("direct")
    import t2i.gan.blocks as blocks  # the ablation's switch is undone after each of its steps

    assert blocks.FOLD_UPSAMPLE_CONV.on is True
    # the published and the library block order compute the same function (same weights, fp32)
    eq = written["reference_equivalence"]
    for k in ("g_images_max_abs_diff", "d_logits_max_abs_diff", "d_mismatched_logits_max_abs_diff"):
        assert eq[k] < 1e-5, (k, eq[k])


def test_reference_runs_the_published_block_order():
    """The reference's blocks upsample before fuse1 (UpBlock) and convolve the skip before pooling (DownBlock)."""
    import torch

    from imagetext.registry import GANS
    import t2i.gan  # noqa: F401
    from t2i.gan.variant import Condition

    mod = _load_script()
    ours = GANS.get("dfgan")(imsize=16, cond_dim=8, nf=4, noise_dim=8)
    ref = GANS.get("dfgan")(imsize=16, cond_dim=8, nf=4, noise_dim=8)
    assert mod.use_published_blocks(ref) == len(ref.generator.blocks) + len(ref.discriminator.blocks)
    seen = {}

    def spy(name):
        def hook(module, inp, out):  # returns None: the output is kept
            seen.setdefault(name, inp[0].shape[-1])

        return hook

    for name, v in (("ours", ours), ("ref", ref)):
        v.generator.blocks[0].fuse1.register_forward_hook(spy(f"{name}_fuse1"))
        v.discriminator.blocks[0].skip.register_forward_hook(spy(f"{name}_skip"))
        with torch.no_grad():
            img = v.generator(torch.randn(2, 8), Condition(torch.randn(2, 8)))
            v.discriminator(img, torch.randn(2, 8))
    assert seen["ours_fuse1"] == 4 and seen["ref_fuse1"] == 8  # the first up-block takes 4x4 to 8x8
    assert seen["ours_skip"] == 8 and seen["ref_skip"] == 16  # the first down-block takes 16x16 to 8x8


def test_benchmark_gan_variants_tiny(tmp_path, capsys):
    """Every variant through the trainer's own step; NAME:key=value reaches that config only."""
    mod = load_script("benchmark_gan_variants")
    out = tmp_path / "variants.json"
    res = mod.main(["--configs", "dfgan_tiny,attngan_tiny", "--scl", "--steps", "1", "--repeats", "1",
                    "--warmup", "0", "--gen-repeats", "1", "--device", "cpu", "--threads", "1", "--json",
                    "--out", str(out), "dfgan_tiny:batch_size=6", "max_steps=2"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text()) == json.loads(json.dumps(res))
    v = printed["variants"]
    assert list(v) == ["dfgan_tiny", "dfgan_tiny_scl", "attngan_tiny", "attngan_tiny_scl"]
    assert v["dfgan_tiny"]["batch"] == 6 and v["dfgan_tiny"]["images_per_step"] == 6
    assert v["dfgan_tiny_scl"]["batch"] == v["attngan_tiny"]["batch"] != 6  # the NAME: override stayed there
    assert v["dfgan_tiny_scl"]["images_per_step"] == 2 * v["dfgan_tiny_scl"]["batch"]  # two branches
    assert v["attngan_tiny"]["variant"] == "attngan" and v["attngan_tiny_scl"]["contrast_weight"] > 0
    for name, e in v.items():
        for k in ("img_per_s_median", "step_ms_median", "cpu_ms_median", "params_g", "params_d"):
            assert e[k] > 0, (name, k)
        assert e["img_per_s_min"] <= e["img_per_s_median"] <= e["img_per_s_max"]
        assert e["peak_mem_mb"] >= 0 and e["params_frozen"]["text_encoder"] > 0
        assert e["generation"]["batch1_ms_median"] > 0 and e["generation"]["batch64_img_per_s_median"] > 0
    # the same modules with and without the contrast term
    assert v["attngan_tiny"]["params_g"] == v["attngan_tiny_scl"]["params_g"]


def test_benchmark_gan_variants_bad_config_is_one_line():
    import pytest

    mod = load_script("benchmark_gan_variants")
    with pytest.raises(SystemExit) as e:
        mod.main(["--configs", "no_such_variant", "--steps", "1", "--repeats", "1"])
    assert "no_such_variant" in str(e.value) and "not found" in str(e.value)


def test_benchmark_gan_variants_ablation_twins(capsys):
    """--ablations adds a NAME+A twin where the switch applies (direct-tower: GALIP only), with its cost."""
    import pytest

    mod = load_script("benchmark_gan_variants")
    res = mod.main(["--configs", "dfgan_tiny,galip_tiny,ssagan_tiny_scl", "--ablations",
                    "direct-tower,unfolded-upconv,separate-encodings", "--steps", "1", "--repeats", "1", "--warmup",
                    "0", "--gen-repeats", "1", "--device", "cpu", "--threads", "1", "--no-mem", "--json"])
    v = res["variants"]
    assert list(v) == ["dfgan_tiny", "dfgan_tiny+unfolded-upconv", "galip_tiny", "galip_tiny+direct-tower",
                       "galip_tiny+unfolded-upconv", "ssagan_tiny_scl", "ssagan_tiny_scl+unfolded-upconv",
                       "ssagan_tiny_scl+separate-encodings"]
    a = v["galip_tiny+direct-tower"]["ablation"]
    assert a["of"] == "galip_tiny" and a["switched_off"] == "direct-tower"
    assert a["speedup_cpu_time_of_the_optimisation"] > 0 and "ablation" not in v["galip_tiny"]
    assert v["galip_tiny+direct-tower"]["params_g"] == v["galip_tiny"]["params_g"]  # the same model
    from t2i.gan import switches

    # every switch is back on afterwards
    assert switches.FOLD_UPSAMPLE_CONV.on and switches.SHARE_TOWER_PASS.on and switches.SHARE_IMAGE_ENCODING.on
    with pytest.raises(SystemExit, match="unknown ablation"):
        mod.main(["--configs", "dfgan_tiny", "--ablations", "no-such", "--steps", "1", "--repeats", "1"])
    capsys.readouterr()
