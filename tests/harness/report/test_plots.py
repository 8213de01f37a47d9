"""The report's PNG plots."""

from tests.harness.report.golden_run import PNG


def test_plots_are_written_as_non_empty_pngs(golden_run):
    run, paths = golden_run
    plots = {name: path for name, path in paths.items() if name.startswith("plots/")}
    assert sorted(plots) == ["plots/accuracy_vs_bits_minilm_rt.png", "plots/accuracy_vs_bits_vit_mnist.png",
                             "plots/improvement_heatmap.png", "plots/noise_schedules.png"]
    for path in plots.values():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    assert "![noise schedules](plots/noise_schedules.png)" in paths["report.md"].read_text(encoding="utf-8")
