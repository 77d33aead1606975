"""Shared pieces of the benchmarks: data loading, the reference loop, environment description."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vaekit.data import load_mnist_pickle

ROOT = Path(__file__).resolve().parents[1]


def load_mnist():
    """MNIST (50k train / 10k test, float32 in [0, 1]) from .devdata/ or $VAEKIT_DATA."""
    for folder in (os.environ.get("VAEKIT_DATA"), ROOT / ".devdata"):
        if folder and (Path(folder) / "mnist.pkl.gz").exists():
            return load_mnist_pickle(Path(folder) / "mnist.pkl.gz")
    raise SystemExit("mnist.pkl.gz not found in .devdata/ or $VAEKIT_DATA")


def environment() -> dict:
    """What the figures were measured on."""
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        try:
            import subprocess

            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        except OSError:
            env["driver"] = "?"
    return env


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- the reference: pytorch/examples vae/main.py, with dynamic binarisation added ------------------


class MNISTItems(Dataset):
    """Per-item access as torchvision's MNIST gives it: uint8 storage, a float tensor per item.

    (The example's ToTensor also goes through PIL per item; that cost is left out here, so the
    reference below is, if anything, faster than the original.) Values are k/256 as in the pickle,
    so both loops see exactly the same data.
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.images = (x * 256).round().to(torch.uint8).view(-1, 28, 28).numpy()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]).float().div_(256).unsqueeze(0), 0


class ReferenceVAE(nn.Module):
    def __init__(self, width: int = 400, latent: int = 20) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, width)
        self.fc21 = nn.Linear(width, latent)
        self.fc22 = nn.Linear(width, latent)
        self.fc3 = nn.Linear(latent, width)
        self.fc4 = nn.Linear(width, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def reference_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def reference_epochs(
    x_train: torch.Tensor,
    device: torch.device,
    *,
    epochs: int,
    batch_size: int = 128,
    width: int = 400,
    seed: int = 0,
    max_steps: int | None = None,
):
    """The examples loop, one epoch per ``next()``: yields (model, seconds of that epoch)."""
    torch.manual_seed(seed)
    model = ReferenceVAE(width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(MNISTItems(x_train), batch_size=batch_size, shuffle=True, **kwargs)
    for _epoch in range(epochs):
        model.train()
        train_loss = 0
        sync(device)
        t0 = time.perf_counter()
        for batch_idx, (data, _) in enumerate(loader):
            data = data.to(device)
            data = torch.bernoulli(data)  # dynamic binarisation (not in the example)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = reference_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            if max_steps is not None and batch_idx + 1 >= max_steps:
                break
        sync(device)
        yield model, time.perf_counter() - t0


def reference_train(x_train: torch.Tensor, device: torch.device, *, epochs: int, **kw):
    """The examples loop run for ``epochs``; returns (model, seconds per epoch list)."""
    runs = list(reference_epochs(x_train, device, epochs=epochs, **kw))
    return runs[-1][0], [seconds for _, seconds in runs]


def reference_as_vaekit(ref: ReferenceVAE, vae):
    """Copy the reference's weights into a vaekit VAE of the same shape, for evaluation.

    The reference decodes Bernoulli means through a sigmoid; vaekit's decoder emits logits, so
    the weights carry over as they are. The encoder's two heads become one layer.
    """
    with torch.no_grad():
        enc0, enc1 = vae.encoder[0], vae.encoder[2]
        dec0, dec1 = vae.decoder[0], vae.decoder[2]
        enc0.weight.copy_(ref.fc1.weight)
        enc0.bias.copy_(ref.fc1.bias)
        enc1.weight.copy_(torch.cat([ref.fc21.weight, ref.fc22.weight]))
        enc1.bias.copy_(torch.cat([ref.fc21.bias, ref.fc22.bias]))
        dec0.weight.copy_(ref.fc3.weight)
        dec0.bias.copy_(ref.fc3.bias)
        dec1.weight.copy_(ref.fc4.weight)
        dec1.bias.copy_(ref.fc4.bias)
    return vae


def as_np(x) -> np.ndarray:
    return np.asarray(x)
