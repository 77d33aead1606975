"""Settings chosen from the data where the user gave none: a small table (rows of a few numbers)
gets a latent space no wider than half its columns and enough epochs for a useful number of
optimizer steps, with early stopping to keep the best of them, instead of the 20 latent dims and
10 epochs that suit a large data set."""

from __future__ import annotations

import math

#: The widest latent space chosen for a table (the model's default, 20).
TABLE_MAX_LATENT = 20
#: Optimizer steps a table's run is given when epochs is not set (10 epochs of 4 steps do not
#: train a model of a 400-row table).
TABLE_STEPS = 3000
#: Epochs are chosen from TABLE_DEFAULT_EPOCHS (TrainConfig's default) up to this many.
TABLE_MAX_EPOCHS = 1000
TABLE_DEFAULT_EPOCHS = 10


def table_latent_dim(columns: int) -> int:
    """The latent dims for a table of ``columns`` numbers a row: half the columns (rounded
    down), at least 2 and at most :data:`TABLE_MAX_LATENT`."""
    return min(TABLE_MAX_LATENT, max(2, columns // 2))


def table_patience(epochs: int) -> int:
    """Early stopping's patience for a table trained for ``epochs`` chosen from its size: a
    tenth of them, at least 10 (a small table overfits long before 1000 epochs end)."""
    return max(10, epochs // 10)


def table_epochs(n_train: int, batch_size: int) -> int:
    """Epochs that give a table of ``n_train`` training rows, in batches of ``batch_size``,
    about :data:`TABLE_STEPS` optimizer steps: at least 10 (the default for any data) and at
    most :data:`TABLE_MAX_EPOCHS`."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    wanted = math.ceil(TABLE_STEPS / steps_per_epoch)
    return min(TABLE_MAX_EPOCHS, max(TABLE_DEFAULT_EPOCHS, wanted))
