import subprocess
import sys


def test_arnq_imports_neither_ray_nor_wandb():
    code = (
        "import sys, arnq, arnq.quant, arnq.ptq, arnq.models, arnq.data, arnq.train, arnq.cache\n"
        "bad = [m for m in ('ray', 'wandb') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
