"""Quick checks on a CUDA machine before the benchmarks: the fused log-likelihood against the
general path, the graph and streaming training paths against the eager loop."""

import time

import torch
from _common import load_mnist

from vaekit import VAE
from vaekit.evaluate import log_likelihood
from vaekit.train import fit

data = load_mnist()
dev = torch.device("cuda")
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())
for act in ("relu", "tanh"):
    torch.manual_seed(0)
    m = VAE(data_shape=(784,), latent_dim=20, hidden=(400,), activation=act).to(dev)
    fit(m, data.train[:5000], epochs=1, batch_size=100, binarize="dynamic", fast="off")
    x = data.test[:64].to(dev)
    ref = log_likelihood(m, x, k=500, fused=False)
    for prec in ("ieee", "tf32x3", "tf32"):
        ll = log_likelihood(m, x, k=500, fused=True, matmul_precision=prec)
        print(act, prec, "mean", float(ll.mean()), "ref", float(ref.mean()),
              "max|diff|", float((ll - ref).abs().max()))  # fmt: skip
for kw in ({"fast": "off"}, {"fast": "graph"}, {"fast": "graph", "resident": "no"},
           {"fast": "graph", "precision": "bf16"}, {"fast": "compile"}):  # fmt: skip
    torch.manual_seed(0)
    m = VAE(data_shape=(784,), latent_dim=20, hidden=(400,), activation="relu").to(dev)
    t0 = time.perf_counter()
    h = fit(m, data.train[:10000], epochs=3, batch_size=128, binarize="dynamic", **kw)
    torch.cuda.synchronize()
    print(kw, round(time.perf_counter() - t0, 2), [round(r["train_bound"], 2) for r in h],
          [r["seconds"] for r in h], h[-1]["path"], h[-1].get("notice"))  # fmt: skip
