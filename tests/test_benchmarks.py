"""The benchmark harness's bookkeeping (no timings are asserted anywhere)."""

import json

import pytest
from pathlib import Path

from benchmarks.run import END, START, markdown, update_readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_the_harness_output_for_the_stored_results():
    md = markdown(json.loads((ROOT / "benchmarks" / "results.json").read_text()))
    readme = (ROOT / "README.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == md.strip()


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\noutro\n")
    assert update_readme("| new | table |", readme)
    assert readme.read_text() == f"intro\n{START}\n| new | table |\n{END}\noutro\n"
    plain = tmp_path / "plain.md"
    plain.write_text("no markers")
    assert not update_readme("x", plain) and plain.read_text() == "no markers"


def test_gpu_section_skips_without_a_gpu_and_keeps_an_earlier_measurement(tmp_path, monkeypatch):
    """On a machine without a GPU the gpu section records why and a run keeps the GPU numbers an
    earlier run on a GPU stored; the markdown then shows them (GPU line and tables)."""
    import jax

    from benchmarks import run

    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU: the section measures instead of skipping")
    assert "skipped" in run.bench_gpu()
    row = {"n": 100000, "chunk_size": 4096, "seconds_per_step": 1.0, "loss_and_grad_seconds": 0.5,
           "loss_and_grad_gflops": 100.0, "fraction_of_matmul_peak": 0.2}
    scaling = {"device": "gpu", "dtype": "float64", "matmul_peak_gflops": 500.0, "rows": [row]}
    seeds = {"problem": "p", "vmapped_over_one": 2.0, "loss_grad_64_over_one": 1.5}
    earlier = {"machine": run.machine_info(), "quick": False, "gpu": {"machine": {"date": "then", "versions": {"jax": "x"}}, "device_kind": "H100",
                       "float64": scaling, "float32": dict(scaling, dtype="float32"),
                       "seeds": seeds, "seeds_landscape": seeds}}
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    monkeypatch.setattr(run, "update_readme", lambda md: False)
    run.main(["--only", "gpu", "--out", str(tmp_path)])
    kept = json.loads((tmp_path / "results.json").read_text())
    assert kept["gpu"]["device_kind"] == "H100"
    md = (tmp_path / "RESULTS.md").read_text()
    assert "GPU: H100" in md and "| n=100000 chunk 4096 |" in md and "20.0%" in md
    assert "No GPU was available" not in md


def test_a_run_written_elsewhere_leaves_the_readme_alone(tmp_path, monkeypatch):
    """--out DIR (say a quick comparison) never rewrites the README's stored table; only the default
    folder, benchmarks/, does."""
    from benchmarks import run

    written = []
    monkeypatch.setattr(run, "update_readme", lambda md: written.append(md) or True)
    (tmp_path / "results.json").write_text((run.DEFAULT_OUT / "results.json").read_text())
    run.main(["--markdown-only", "--out", str(tmp_path)])
    assert written == [] and (tmp_path / "RESULTS.md").exists()
    run._readme_if_default(run.DEFAULT_OUT, "| table |")
    assert written == ["| table |"]


def test_readme_prose_quotes_the_certificate_table():
    """The README's sentence on the certified solves at n = 5000 and 20000 quotes benchmarks/results.json."""
    import json
    import re

    root = Path(__file__).resolve().parents[1]
    rows = {row["n"]: row for row in json.loads((root / "benchmarks" / "results.json").read_text())["certificate"]["rows"]}
    text = " ".join((root / "README.md").read_text().split())
    found = re.search(r"n = 5000 \(k = 10, ReLU, 50 fixed batch-binding batches\) took ([0-9.]+) s \(compile "
                      r"included\) and ([0-9.]+) GB on 2 cores, of which ([0-9.]+) s for the certificate, and one "
                      r"at n = 20000 \(200 batches\) ([0-9.]+) s, certified to ([0-9.e-]+)", text)
    assert found
    five, twenty = rows[5000], rows[20000]
    assert [float(x) for x in found.groups()] == [round(five["solve_seconds"], 1), round(five["peak_memory_gb"], 2),
                                                   round(five["certificate_seconds"], 1),
                                                   round(twenty["solve_seconds"], 1), float(f"{twenty['relative_gap']:.1e}")]
    assert five["status"] == twenty["status"] == "optimal"


def test_readme_prose_quotes_the_stored_staircase_large_run():
    """The README's sentence on the n = 20000 staircase runs quotes the run stored in benchmarks/runs/
    (docs are claims)."""
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    rows = json.loads((root / "benchmarks" / "runs" / "2026-12-07-staircase-large.json").read_text())[
        "staircase_large"]["rows"]
    assert [r["status"] for r in rows] == ["optimal"] * 3 and all(r["escapes"] == 0 for r in rows)
    times = ", ".join(f"{r['solve_seconds']:.1f}" for r in rows[:-1]) + f" and {rows[-1]['solve_seconds']:.1f} s"
    assert re.sub(r"\s+", " ", times) in re.sub(r"\s+", " ", readme)


def test_readme_prose_quotes_the_stored_five_start_peers_run():
    """The README's "To a certified optimum" bullet quotes the stored 5-start peers run (the same run as
    benchmarks/results.json's peers section): every ReLU start proved optimal at the target, the peers
    that reached it from the stalled starts, and the ratios on the start both pymanopt methods reached.
    Issue 32's criterion on its data: with ReLU at d = k the certified call is at least 3x faster than
    the faster of ConjugateGradient and TrustRegions on every start either reached (their medians of
    3 runs; also against ConjugateGradient's fastest single run on this data)."""
    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "README.md").read_text().split())
    stored = json.loads((root / "benchmarks" / "runs" / "2026-12-07-peers.json").read_text())
    run = stored["peers"]
    assert stored["command"] == "python -m benchmarks --only peers"
    assert run == json.loads((root / "benchmarks" / "results.json").read_text())["peers"]
    relu = run["settings"]["relu"]
    rows = relu["rows"]
    assert run["cap_seconds"] == 20.0 and len(rows) == 5
    assert relu["ufm_certified"] == relu["ufm_certified_reached"] == 5
    seconds = sorted(r["ufm-scl"]["certified_seconds"] for r in rows)
    escapes = ", ".join(str(e) for e in relu["ufm_escapes"])
    assert (f"proved all 5 starts optimal at the target (escapes {escapes}; {seconds[0]:.2f}-{seconds[-1]:.2f} s)"
            in text)
    stalled = [r for r in rows if not r["ufm-scl"]["reached"]]
    reached = [(r, name) for r in stalled for name in r if name not in ("seed", "ufm-scl") and r[name]["reached"]]
    assert len(stalled) == 3 and [name for _, name in reached] == ["pymanopt TrustRegions"]
    r, name = reached[0]
    assert (f"From the 3 starts where plain descent stalls no peer reached the target within 20 s but "
            f"TrustRegions from one ({r[name]['seconds']:.1f} s; the certified call took "
            f"{r['ufm-scl']['certified_seconds'] / r[name]['seconds']:.2f}x its time)") in text
    methods = ("pymanopt ConjugateGradient", "pymanopt TrustRegions")
    both = [r for r in rows if all(r[m]["reached"] for m in methods)]
    assert len(both) == 1
    row = both[0]
    ours, cg, tr = row["ufm-scl"]["certified_seconds"], row[methods[0]], row[methods[1]]
    assert len(cg["runs_seconds"]) == 3 and cg["seconds"] == sorted(cg["runs_seconds"])[1]
    assert (f"certified call ({ours:.3f} s, to its 1e-12 tolerance and proved) took {ours / cg['seconds']:.2f}x "
            f"ConjugateGradient's time to the 1e-6 target ({cg['seconds']:.3f} s, the median of its runs of "
            f"{min(cg['runs_seconds']):.3f}-{max(cg['runs_seconds']):.3f} s; "
            f"{ours / min(cg['runs_seconds']):.2f}x its fastest) and {ours / tr['seconds']:.2f}x TrustRegions'") in text
    for r in rows:                                     # issue 32: at least 3x faster, to a proof
        times = [r[m]["seconds"] for m in methods if r[m]["reached"]]
        assert not times or (r["ufm-scl"]["certified"] and r["ufm-scl"]["certified_seconds"] <= min(times) / 3)
    assert ours <= min(cg["runs_seconds"]) / 3
    plain = run["settings"]["no_relu"]
    ratios = [plain["summary"][f"pymanopt {m}"]["certified_median_ratio"] for m in ("ConjugateGradient", "TrustRegions")]
    assert (f"Without ReLU the certified call took {plain['ufm_median_certified_seconds']:.2f} s (median; to 1e-12 "
            f"and proved, against the peers' 1e-6), ratios {ratios[0]:.2f} and {ratios[1]:.2f}.") in text


def test_readme_prose_quotes_the_stored_imbalanced_peers_run():
    """The README's sentence on the imbalanced peers problem (issue 32's counts 160 x 5 and 40 x 5)
    quotes its stored run: every start stalled without the staircase and was proved optimal at the
    target with it; no pymanopt method reached the target from any start."""
    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "README.md").read_text().split())
    run = json.loads((root / "benchmarks" / "runs" / "2026-12-07-peers-imbalanced-quick.json").read_text())
    run = run["peers_imbalanced"]
    relu = run["settings"]["relu"]
    rows = relu["rows"]
    assert run["cap_seconds"] == 10.0 and run["starts"] == len(rows) == 3
    assert relu["ufm_reached"] == 0 and relu["ufm_certified"] == relu["ufm_certified_reached"] == 3
    seconds = sorted(r["ufm-scl"]["certified_seconds"] for r in rows)
    escapes = ", ".join(str(e) for e in relu["ufm_escapes"])
    assert (f"proved all 3 optimal at the target (escapes {escapes}; {seconds[0]:.2f}-{seconds[-1]:.2f} s)"
            in text)
    assert not any(r[f"pymanopt {m}"]["reached"] for r in rows for m in ("ConjugateGradient", "TrustRegions"))
    lbfgs = [r["torch L-BFGS"]["seconds"] for r in rows if r["torch L-BFGS"]["reached"]]
    assert len(lbfgs) == 1 and f"torch L-BFGS from one ({lbfgs[0]:.2f} s)" in text


def test_readme_prose_quotes_the_stored_compare_run():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    row = json.loads((root / "benchmarks" / "runs" / "2026-12-07-compare.json").read_text())["compare"]
    assert row["exit"] == 0 and (row["n"], row["d"]) == (50000, 2048)
    assert (f"{row['seconds']:.1f} s for the whole call,\n  {row['peak_memory_gb']:.2f} GB peak for a "
            f"{row['array_gb']:.2f} GB array") in readme


def test_readme_prose_quotes_the_peers_table():
    """The README's "Against the peers" bullet quotes benchmarks/results.json: ufm-scl's median time
    and iterations, each peer's speed-up (1 / the median pairwise ratio), the compiled loop and the
    default call; with ReLU the starts reached, the peers' upper bounds and the BB scheme's ratio."""
    root = Path(__file__).resolve().parents[1]
    peers = json.loads((root / "benchmarks" / "results.json").read_text())["peers"]
    plain, relu = peers["settings"]["no_relu"], peers["settings"]["relu"]
    text = " ".join((root / "README.md").read_text().split())
    bullet = text.split("**Against the peers**")[1].split("**To a certified optimum")[0]

    def faster(setting, name):
        return 1 / setting["summary"][name]["median_ratio"]
    assert f"medians over {peers['starts']} starts" in bullet
    assert (f"takes {plain['ufm_median_seconds']:.3f} s ({plain['ufm_median_iterations']} iterations) and is "
            f"{faster(plain, 'pymanopt ConjugateGradient'):.1f}x faster than pymanopt ConjugateGradient, "
            f"{faster(plain, 'pymanopt TrustRegions'):.1f}x than TrustRegions, {faster(plain, 'torch L-BFGS'):.1f}x "
            f"than torch L-BFGS, {faster(plain, 'BB in PyTorch'):.1f}x than the same BB scheme in PyTorch") in bullet
    slow = sorted(faster(plain, name) for name in ("geoopt RiemannianAdam", "Adam + projection"))
    assert f"{slow[0]:.0f}-{slow[1]:.0f}x faster than geoopt RiemannianAdam and Adam + projection" in bullet
    assert (f"compiled loop alone took {plain['ufm_median_loop_seconds']:.3f} s and the default call (to its own "
            f"tolerance, 1e-12) {plain['ufm_median_default_call_seconds']:.3f} s") in bullet
    extra = relu["peers_reached_where_ufm_did_not"]
    assert [name for name, count in extra.items() if count] == ["pymanopt TrustRegions"] and extra["pymanopt TrustRegions"] == 1
    assert (f"reaches the orthogonal frame from {relu['ufm_reached']} of the {relu['starts']} starts (TrustRegions "
            f"from one more); on those two it takes {relu['ufm_median_seconds']:.3f} s") in bullet
    assert relu["ufm_reached"] == 2
    bounds = [faster(relu, f"pymanopt {m}") for m in ("ConjugateGradient", "TrustRegions")]
    assert f"upper bounds: {bounds[0]:.1f}x and {bounds[1]:.1f}x" in bullet
    assert f"the BB scheme in PyTorch is {faster(relu, 'BB in PyTorch'):.1f}x slower" in bullet


def test_readme_prose_quotes_the_startup_table():
    """The README's "Start-up" bullet quotes benchmarks/results.json's startup section: the medians of
    each whole process, cold and warm, and the compile trade at n = 40 and n = 1000."""
    root = Path(__file__).resolve().parents[1]
    startup = json.loads((root / "benchmarks" / "results.json").read_text())["startup"]
    text = " ".join((root / "README.md").read_text().split())
    bullet = text.split("**Start-up**")[1].split("**Against the peers**")[0]
    median = {(row["label"], row["cache"]): row["median_seconds"] for row in startup["rows"]}
    assert (f"`ufm --help` {median[('help', '-')]:.2f} s and a rejected option {median[('bad input', '-')]:.2f} s"
            in bullet)
    assert (f"`ufm solve` on the default problem {median[('solve', 'cold')]:.2f} s cold and "
            f"{median[('solve', 'warm')]:.2f} s warm") in bullet
    assert (f"`ufm verify --quick` {median[('verify --quick', 'cold')]:.1f} s cold and "
            f"{median[('verify --quick', 'warm')]:.1f} s warm") in bullet
    trade = {row["n"]: row for row in startup["compile_trade"]}
    small, large = trade[40], trade[1000]
    assert (f"at n = 40 compiles in {small['fast_compile_seconds']:.2f} s instead of {small['default_compile_seconds']:.2f} s "
            f"and runs in {small['fast_run_seconds']:.3f} s instead of {small['default_run_seconds']:.3f} s") in bullet
    assert (f"run it {large['fast_run_seconds'] / large['default_run_seconds']:.1f}x slower "
            f"({large['fast_run_seconds']:.2f} s against {large['default_run_seconds']:.3f} s)") in bullet


def test_readme_prose_quotes_the_scaling_certificate_explorer_and_sharding_tables():
    """The README's Performance bullets on the loss + gradient against its floor, the certificate at
    scale, the explorer and sharding quote benchmarks/results.json."""
    root = Path(__file__).resolve().parents[1]
    res = json.loads((root / "benchmarks" / "results.json").read_text())
    text = " ".join((root / "README.md").read_text().split())
    f64 = {row["n"]: row for row in res["gd_scaling"]["rows"]}
    f32 = {row["n"]: row for row in res["gd_scaling_float32"]["rows"]}
    assert (f"the plain form is {f64[1000]['plain_over_floor']:.2f}x (n = 1000), {f64[5000]['plain_over_floor']:.2f}x "
            f"(n = 5000) and {f64[20000]['plain_over_floor']:.2f}x (n = 20000) in float64, "
            f"{f32[5000]['plain_over_floor']:.2f}x (n = 5000) and {f32[20000]['plain_over_floor']:.2f}x (n = 20000) "
            "in float32") in text
    precise = [row["loss_and_grad_over_floor"] for row in (*f64.values(), *f32.values())]
    assert f"The precise kernel, which finishes every solve, is {min(precise):.1f}-{max(precise):.1f}x." in text
    assert all(row["evaluations_per_step"] == 1.0 for row in f64.values())
    cert = res["certificate"]["rows"]
    assert [row["status"] for row in cert] == ["optimal"] * 4
    gaps = [row["relative_gap"] for row in cert]
    assert 1e-10 <= min(gaps) and max(gaps) < 2e-8            # "relative gaps 1e-10 .. 1e-8"
    seconds = ", ".join(f"{row['certificate_seconds']:.1f}" for row in cert[:-1])
    peaks = [row["peak_memory_gb"] for row in cert]
    assert (f"the certificate taking {seconds} and {cert[-1]['certificate_seconds']:.1f} s (Lanczos), in "
            f"{min(peaks):.2f}-{max(peaks):.2f} GB peak memory") in text
    assert all(row["method"] == "lanczos" for row in cert)
    explorer = res["explorer"]["rows"]
    warm = [t for row in explorer for t in (row["warm_seconds"], row["warm_small_tau_seconds"])]
    cold = [row["cold_seconds"] for row in explorer]
    assert (f"in {min(warm):.2f}-{max(warm):.2f} s for k = {explorer[0]['k']} to {explorer[-1]['k']}" in text
            and f"its first update compiles ({min(cold):.1f}-{max(cold):.1f} s)" in text)
    speedups = [row["speedup"] for row in res["sharded"]["rows"]]
    assert f"is {min(speedups):.2f}-{max(speedups):.2f}x one device" in text
    assert all(row["one_final_log_excess"] == row["sharded_final_log_excess"] for row in res["sharded"]["rows"])
