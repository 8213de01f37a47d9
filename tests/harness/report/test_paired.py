import json

import pytest
from scipy import stats

from harness.report.paired import (
    arm_row,
    cell_values,
    folder_rows,
    mean_gain,
    mean_std,
    paired_diff,
    spread_row,
)


def _row(seed, arm, q, ptq="repq_vit", status="ok", params="{}"):
    return {"model": "m", "bits": "W4A4", "ptq": ptq, "arm": arm, "arm_params": params, "seed": seed,
            "q_acc": q, "ft_acc": q + 1, "status": status}


ROWS = [_row(2, "plain", 70.0), _row(0, "plain", 72.0), _row(1, "plain", 71.0), _row(1, "plain", 0.0, status="error"),
        _row(0, "arnq", 75.0), _row(1, "arnq", 73.5), _row(2, "arnq", 74.0), _row(0, "arnq", 60.0, params='{"x": 1}')]


def test_a_cell_comes_in_the_seed_order_asked_for_from_its_ok_rows():
    assert cell_values(ROWS, (0, 1, 2), ptq="repq_vit", arm="plain") == [72.0, 71.0, 70.0]
    assert cell_values(ROWS, (2, 0), "ft_acc", arm="plain") == [71.0, 73.0]
    assert cell_values(ROWS, (0,), arm="arnq", arm_params='{"x": 1}') == [60.0]


def test_a_missing_seed_names_the_cell_and_the_seed():
    with pytest.raises(KeyError, match=r"seed\(s\) \[3\]"):
        cell_values(ROWS, (0, 3), arm="plain")
    with pytest.raises(KeyError, match="ptq4vit"):
        cell_values(ROWS, (0,), ptq="ptq4vit")


def test_mean_std_and_the_paired_difference_print_what_the_write_ups_cite():
    assert mean_std([72.0, 71.0, 70.0]) == "71.00 ± 1.00"
    assert mean_std([72.0]) == "72.00"
    a, b = [75.0, 73.5, 74.0], [72.0, 71.0, 70.0]
    p = stats.ttest_rel(a, b).pvalue
    assert paired_diff(a, b) == f"+3.17 ± 0.76 (+3.00, +2.50, +4.00) | {p:.3f}"
    assert paired_diff(a, b, sep=", p ").endswith(f"(+3.00, +2.50, +4.00), p {p:.3f}")
    assert mean_gain(ROWS, (0, 1, 2), ptq="repq_vit", arm_params="{}") == pytest.approx((75.0 + 73.5 + 74.0) / 3 - 71.0)


def test_folder_rows_reads_every_line_of_a_folders_store(tmp_path):
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    assert folder_rows(tmp_path) == ROWS


def test_an_arm_row_gives_plain_drop_and_the_share_recovered_unless_the_drop_is_small():
    plain_ft, plain_q, arm_ft, arm_q = [82.0, 81.0, 80.0], [72.0, 71.0, 70.0], [80.0, 80.0, 80.0], [75.0, 73.5, 74.0]
    row = arm_row("omse", plain_ft, plain_q, arm_ft, arm_q)
    assert row.startswith("| omse | 81.00 ± 1.00 | 71.00 ± 1.00 | 80.00 ± 0.00 | 74.17 ± 0.76 | +3.17 ± 0.76 ")
    assert row.endswith("| 10.00 | 32 % |")  # 3.17 of plain's 10-point drop
    assert arm_row("x", [72.1, 71.1, 70.1], plain_q, arm_ft, arm_q).endswith("| 0.10 | — (drop under 0.5) |")


def test_a_spread_row_counts_the_positive_methods_and_lists_them():
    gains = {"minmax": 6.0, "repq_vit": -1.0, "omse": 1.0}
    assert spread_row("all", gains) == "| all | +2.00 ± 3.61 | 2 of 3 | minmax +6.00, repq_vit -1.00, omse +1.00 |"
    assert spread_row("all", gains, itemise=False) == "| all | +2.00 ± 3.61 | 2 of 3 |"


def test_mean_gain_can_match_the_arm_on_params_the_baseline_lacks():
    # the arm's {"x": 1} cell holds seed 0 only (60.0); plain's cell is "{}" (72.0 at seed 0)
    assert mean_gain(ROWS, (0,), arm_match={"arm_params": '{"x": 1}'}, ptq="repq_vit", arm_params="{}") == -12.0
    assert mean_gain(ROWS, (0,), ptq="repq_vit", arm_params="{}") == 3.0  # without it both sides match "{}"
