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
