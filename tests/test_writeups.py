"""The write-ups in results/ quote only spreads their committed data support (scripts/check_writeups.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_writeups", ROOT / "scripts" / "check_writeups.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def test_every_quoted_mean_and_std_traces_to_a_committed_file():
    assert check.untraced(check.WRITEUPS) == {}


def test_a_pair_off_by_one_in_its_last_digit_is_caught():
    printed, computed = check.supported_pairs()
    assert check.traced(("+8.42", "0.57"), printed, computed)  # ARNQ.md's headline, from arnq_research_lr
    assert check.traced(("8.42", "0.57"), printed, computed)  # quoted without its sign
    assert not check.traced(("+8.42", "0.58"), printed, computed)
    assert not check.traced(("+8.43", "0.57"), printed, computed)
    assert list(check.pairs_in("a −5.5 ± 5.1 and 80.20 ± 0.39")) == [("-5.5", "5.1"), ("80.20", "0.39")]


def test_every_table_number_traces_to_a_committed_file():
    assert check.table_untraced() == {}


def test_a_table_cell_altered_in_its_last_digit_is_caught(tmp_path):
    name = "results/ptq_methods/README.md"
    text = (ROOT / name).read_text()
    row = "| repq_vit | 32 | 89.97 | 89.99 | **89.71** | 86.67 | 0.5 / 0.5 / 0.5 / 0.5 |"
    assert row in text
    altered = tmp_path / "README.md"
    altered.write_text(text.replace(row, row.replace("86.67", "86.68")))
    missing = check.table_untraced([str(altered)], {str(altered): check.TABLES[name]})
    assert [cell.split(": ")[-1] for cell in missing[str(altered)]] == ["86.68"]


def test_table_numbers_skip_pairs_code_integers_and_parameter_columns():
    text = ("| arm | q_acc | calib s |\n|---|---|---|\n"
            "| `arnq` p = 0.5 | +8.42 ± 0.57 (73.77) | 18 / 0.7 |\n")
    cells = list(check.table_numbers(text, skip_columns=("arm",)))
    assert [(c.column, c.text) for c in cells] == [("q_acc", "73.77"), ("calib s", "0.7")]
    support = check.table_support(check.TABLES["results/ARNQ.md"])
    assert support.for_cell(cells[0]).rule("73.77") == "value"  # arnq_research_lr: q_acc mean
    assert support.for_cell(cells[0]).rule("73.78") is None
