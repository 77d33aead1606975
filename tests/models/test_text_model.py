"""Text: tokenizer, the sequence likelihood against hand computation and enumeration, the text
VAE's training, save/load, and the vaekit commands on a tiny word list."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import run_cli

import vaekit
from vaekit import data
from vaekit.data.text import load_text
from vaekit.errors import ConfigError, DataError
from vaekit.estimators import elbo as elbo_of
from vaekit.evaluation import evaluate_text
from vaekit.models import TextVAE
from vaekit.models.text import sequence_log_prob
from vaekit.tokenizer import END, PAD, START, UNK, Tokenizer

WORDS = "cat car cart bat bar barn tar tarn can ban cab tab scan scar star bark dark park"
WORDS = WORDS.split()


def tiny_model(**fields) -> TextVAE:
    settings = dict(vocab=tuple("ab"), data_shape=(3,), latent_dim=2, embed_dim=4, hidden=(8,))
    return TextVAE(**{**settings, **fields})


# -- tokenizer ---------------------------------------------------------------------------------


def test_tokenizer_round_trip_characters() -> None:
    lines = ["héllo", "a b", "x'y-z"]
    tok = Tokenizer.build(lines)
    assert tok.vocab == tuple(sorted(set("".join(lines))))
    ids = tok.encode(lines, 6)
    assert ids.dtype == torch.float32 and ids.shape == (3, 6)
    assert tok.decode(ids) == lines
    # tokens, then the end token, then padding
    assert ids[1].tolist() == [tok.ids["a"], tok.ids[" "], tok.ids["b"], END, PAD, PAD]


def test_tokenizer_words_unknown_and_too_long() -> None:
    tok = Tokenizer.build(["the cat sat", "the dog"], level="word")
    ids = tok.encode(["the  cow sat"], 5)
    assert ids[0, 1] == UNK
    assert tok.decode(ids) == ["the \ufffd sat"]
    with pytest.raises(
        DataError, match=r"line 2 of text has 4 words but the model takes at most 3"
    ):
        tok.encode(["the cat", "the cat sat sat"], 4)


def test_text_file_splits_and_records_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("\n".join(WORDS) + "\n\n")
    ds = data.load(path)
    assert ds.media == {"kind": "text"}
    assert len(ds.train) + len(ds.valid) + len(ds.test) == len(WORDS)
    assert ds.data_shape == (max(map(len, WORDS)) + 1,)
    tok = Tokenizer(ds.defaults["model"]["vocab"])
    for name in ("train", "valid", "test"):
        assert tok.decode(getattr(ds, name)) == ds.texts[name]
    assert sorted(ds.texts["train"] + ds.texts["valid"] + ds.texts["test"]) == sorted(WORDS)


def test_text_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\nbar\nbaz\n")
    with pytest.raises(DataError, match="not UTF-8"):
        data.load(bad)
    short = tmp_path / "short.txt"
    short.write_text("one\ntwo\n")
    with pytest.raises(DataError, match="holds 2 non-empty lines"):
        data.load(short)
    long = tmp_path / "long.txt"
    long.write_text("a\nb\n" + "x" * 300 + "\n")
    with pytest.raises(DataError, match=r"line 3 of .* has 300 characters"):
        data.load(long)
    long.write_text("a\n\nb\n\n" + "x" * 300 + "\n")  # the file's line, blank lines counted
    with pytest.raises(DataError, match=r"line 5 of .* has 300 characters"):
        data.load(long)


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path: Path) -> None:
    # Windows Notepad saves "UTF-8" with a byte-order mark; it is no character of the data
    path = tmp_path / "notepad.txt"
    path.write_bytes("\ufeff".encode() + "\r\n".join(WORDS).encode() + b"\r\n")
    ds = data.load(path)
    assert ds.defaults["model"]["vocab"] == sorted(set("".join(WORDS)))
    assert sorted(ds.texts["train"] + ds.texts["valid"] + ds.texts["test"]) == sorted(WORDS)


# -- the likelihood ----------------------------------------------------------------------------


def test_sequence_log_prob_by_hand() -> None:
    """V = 6 (four specials, then 'a' = 4, 'b' = 5), T = 3; the string "ab" is [4, 5, END]."""
    logits = torch.tensor(
        [
            [0.0, 1.0, 5.0, 0.5, 2.0, -1.0],  # position 0: PAD and START are masked
            [3.0, 0.0, 0.0, 1.0, 0.0, 2.0],
            [0.0, 4.0, 0.0, 0.0, 9.0, 9.0],  # last position: only END is possible
        ]
    )
    x = torch.tensor([4.0, 5.0, END])
    e = math.exp
    p0 = e(2.0) / (e(1.0) + e(0.5) + e(2.0) + e(-1.0))  # 'a' among END, UNK, a, b
    p1 = e(2.0) / (e(0.0) + e(1.0) + e(0.0) + e(2.0))
    expected = math.log(p0) + math.log(p1) + 0.0
    assert sequence_log_prob(logits, x).item() == pytest.approx(expected, abs=1e-6)
    # the one-token string "a" = [4, END, PAD]: padding counts nothing, END at position 1 does
    x1 = torch.tensor([4.0, END, PAD])
    p_end = e(0.0) / (e(0.0) + e(1.0) + e(0.0) + e(2.0))
    assert sequence_log_prob(logits, x1).item() == pytest.approx(math.log(p0 * p_end), abs=1e-6)


def all_strings(tok: Tokenizer, max_len: int) -> list[str]:
    symbols = [*tok.vocab, "\ufffd"]
    return ["".join(s) for n in range(max_len + 1) for s in itertools.product(symbols, repeat=n)]


def test_p_x_given_z_sums_to_one_over_every_string() -> None:
    """The decoder is a distribution over strings of at most max_len tokens: enumerate them."""
    model = tiny_model().eval()
    strings = all_strings(model.tokenizer, 2)  # '', a, b, unk, aa, ... : 1 + 3 + 9
    ids = model.tokenizer.encode(strings, 3)  # the symbol '\ufffd' is not in the vocab: <unk>
    assert (ids == UNK).any()
    z = torch.randn(4, 1, 2)  # four latents, each scored against every string
    log_p = model.decode(z).log_prob(ids)  # (4, 13)
    assert log_p.shape == (4, len(strings))
    total = torch.logsumexp(log_p.double(), dim=-1).exp()
    assert torch.allclose(total, torch.ones(4, dtype=torch.float64), atol=1e-5)


def test_drawn_strings_follow_log_prob() -> None:
    model = tiny_model().eval()
    strings = all_strings(model.tokenizer, 2)
    ids = model.tokenizer.encode(strings, 3)
    z = torch.randn(1, 2)
    with torch.no_grad():
        p = model.decode(z).log_prob(ids).exp()  # (13,)
    torch.manual_seed(1)
    draws = model.decode(z.expand(4000, 2)).sample()  # (4000, 3)
    counts = torch.zeros(len(strings))
    index = {s: i for i, s in enumerate(strings)}
    for s in model.texts(draws):
        counts[index[s]] += 1
    tv = 0.5 * (counts / counts.sum() - p).abs().sum()
    assert tv < 0.04, f"total variation {tv:.3f} between draws and exp(log_prob)"
    greedy = model.decode(z).mean[0]
    assert greedy[0] not in (PAD, START) and END in greedy.tolist()


def test_free_bits_and_word_dropout_only_in_training() -> None:
    model = tiny_model(free_bits=5.0, word_dropout=0.5)
    x = model.tokenizer.encode(["ab", "b", "aa"], 3)
    g = torch.Generator().manual_seed(0)
    model.eval()
    terms = model(x, k=1, generator=g)
    qz_x = model.encode(x)
    exact = torch.distributions.kl_divergence(qz_x, model.pz())
    assert torch.allclose(terms.kl, exact, atol=1e-6)
    model.train()
    terms = model(x, k=1, generator=torch.Generator().manual_seed(0))
    # every dim's KL is far below 5 nats: each costs exactly 5 and gives the encoder no gradient
    assert torch.allclose(terms.kl, torch.full((3,), 10.0))
    (grad,) = torch.autograd.grad(terms.kl.sum(), model.to_q.weight)
    assert torch.count_nonzero(grad) == 0
    # word dropout changes log p(x|z) for the same z in training only
    z = torch.zeros(3, 2)
    eval_lp = model.eval().decode(z).log_prob(x)
    torch.manual_seed(0)
    train_lps = {tuple(model.train().decode(z).log_prob(x).tolist()) for _ in range(5)}
    assert len(train_lps) > 1 and tuple(eval_lp.tolist()) not in train_lps


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="all equal"):
        tiny_model(hidden=(8, 16))
    with pytest.raises(ConfigError, match="categorical"):
        tiny_model(likelihood="gaussian")
    with pytest.raises(ConfigError, match="single characters"):
        tiny_model(vocab=("ab",))
    with pytest.raises(DataError, match="expects \\(3,\\) token ids"):
        tiny_model().encode(torch.zeros(2, 4))


# -- training, evaluation, checkpoints ----------------------------------------------------------


@pytest.fixture
def words(tmp_path: Path) -> Path:
    path = tmp_path / "words.txt"
    path.write_text("\n".join(WORDS * 3) + "\n")
    return path


def test_training_raises_the_bound_and_iw_estimate_is_above_elbo(words: Path) -> None:
    ds = load_text(words)
    model = vaekit.models.build_model(  # from the data set's defaults, as vaekit train does
        vaekit.models.model_config({**ds.defaults["model"], "hidden": [32], "latent_dim": 4})
    )
    before = float(elbo_of(model, ds.train, seed=0).mean())
    history = model.fit(ds.train, epochs=15, batch_size=16, lr=3e-3, warmup_steps=20)
    after = float(elbo_of(model, ds.train, seed=0).mean())
    assert after > before + 5, (before, after)
    assert history[-1]["train_bound"] > history[0]["train_bound"]
    report = evaluate_text(model, ds.train, k=20)
    assert report["log_likelihood"] >= report["elbo"] - 0.05
    assert report["bits_per_char"] == pytest.approx(
        -report["log_likelihood"] / (report["tokens_per_string"] * math.log(2)), rel=1e-6
    )
    assert 0 <= report["active_units"] <= 4 and len(report["kl_per_dim"]) == 4


def test_save_and_load_bit_for_bit(tmp_path: Path) -> None:
    model = TextVAE(vocab=tuple("xyz'é"), data_shape=(6,), hidden=(8, 8), latent_dim=3)
    model.save(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["kind"] == "text" and config["model"]["vocab"] == list("xyz'é")
    same = vaekit.load(tmp_path / "run")
    assert isinstance(same, TextVAE) and same.config == model.config
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), same.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    x = model.ids(["xyz", "é'"])
    model.eval()
    a = model(x, k=3, generator=torch.Generator().manual_seed(0)).log_w
    b = same(x, k=3, generator=torch.Generator().manual_seed(0)).log_w
    assert torch.equal(a, b)
    assert same.texts(x) == ["xyz", "é'"]


# -- the command line --------------------------------------------------------------------------


def test_commands_on_a_word_list(words: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    tiny = ["--epochs", "3", "--set", "hidden=[16]", "--set", "latent_dim=3", "-k", "3", "-q"]
    code, out, err = run_cli(capsys, "train", "--data", words, "--out", run, *tiny)
    assert code == 0, err
    assert 'kind="text"' in out and "latent dims active" in out
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["media"] == {"kind": "text"}
    assert config["model"]["vocab"] == sorted(set("".join(WORDS)))

    code, out, err = run_cli(capsys, "evaluate", run, "-k", "4")
    assert code == 0, err
    report = json.loads((run / "eval.json").read_text())
    assert "bits/char" in out and report["bits_per_char"] > 0 and report["k"] == 4

    code, out, err = run_cli(capsys, "sample", run, "-n", "7", "--seed", "2")
    assert code == 0, err
    lines = (run / "samples.txt").read_text().splitlines()
    assert len(lines) == 7 and out.splitlines()[:7] == lines
    assert all(set(line) <= set("".join(WORDS)) | {"\ufffd"} for line in lines)

    code, out, err = run_cli(
        capsys, "interpolate", run, "--from", "cat", "--to", "park", "--steps", "5"
    )
    assert code == 0, err
    assert len((run / "interpolation.txt").read_text().splitlines()) == 5

    code, out, err = run_cli(capsys, "reconstruct", run, "-n", "3")
    assert code == 0, err
    pairs = [line.split("\t") for line in (run / "reconstructions.txt").read_text().splitlines()]
    assert len(pairs) == 3 and all(p[0] in WORDS for p in pairs)

    mine = tmp_path / "mine.txt"
    mine.write_text("bat\nstar\n")
    code, out, err = run_cli(capsys, "encode", run, "--input", mine, "--output", tmp_path / "z.npy")
    assert code == 0, err
    code, out, err = run_cli(capsys, "decode", run, tmp_path / "z.npy")
    assert code == 0, err
    assert len((run / "decoded-z.txt").read_text().splitlines()) == 2  # named for z.npy

    # bad input: one line, exit status 2
    for args in (
        ("interpolate", run, "--from", "x" * 40, "--to", "cat"),
        ("manifold", run),
        ("sample", run, "--output", tmp_path / "s.png"),
    ):
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)


def test_word_level_and_a_longer_length_from_the_command_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sentences"  # no suffix: read as text because it is UTF-8
    path.write_text("the cat sat\nthe dog ran\na cat ran\nthe dog sat down\na dog sat\n" * 2)
    run = tmp_path / "run"
    tiny = ["--epochs", "1", "--set", "hidden=[8]", "--set", "latent_dim=2", "-k", "2", "-q"]
    code, _, err = run_cli(capsys, "train", "--data", path, "--out", run, *tiny,
                           "--set", "level=word")  # fmt: skip
    assert code == 0, err
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["level"] == "word" and model["data_shape"] == [5]
    assert model["vocab"] == sorted({"the", "cat", "sat", "dog", "ran", "a", "down"})
    # Its tokens are words: evaluate gives bits per word and the share of words reconstructed.
    code, out, err = run_cli(capsys, "evaluate", run, "-k", "2", "--split", "train")
    assert code == 0, err
    report = json.loads((run / "eval-train.json").read_text())  # named for its split
    assert "bits/word" in out and "% of words" in out and "char" not in out
    assert report["bits_per_word"] == report["bits_per_dim"] > 0 and "bits_per_char" not in report
    code, _, err = run_cli(capsys, "evaluate", run, "-k", "2", "-q")  # the test split's report
    assert code == 0, err
    report = json.loads((run / "eval.json").read_text())
    code, out, err = run_cli(capsys, "info", run)  # its summary line says so too
    assert code == 0, err
    assert f"{report['bits_per_word']:.4f} bits/word" in out and "bits/dim" not in out
    code, _, err = run_cli(capsys, "sample", run, "-n", "3")
    assert code == 0, err
    words = " ".join((run / "samples.txt").read_text().split())
    assert set(words.split()) <= {*model["vocab"], "\ufffd"}
    code, _, err = run_cli(capsys, "train", "--data", path, "--out", tmp_path / "long", *tiny,
                           "--set", "data_shape=[30]")  # fmt: skip
    assert code == 0, err
    assert vaekit.load(tmp_path / "long").config.data_shape == (30,)
    code, _, err = run_cli(capsys, "train", "--data", path, "--out", tmp_path / "bad", *tiny,
                           "--set", "data_shape=[4]")  # fmt: skip
    assert code == 2 and "line 1 of" in err
    assert "has 11 characters but the model takes at most 3" in err


def test_resumed_text_run_matches_one_never_stopped(words: Path, tmp_path: Path, capsys) -> None:
    """Word dropout draws from the training loop's generator, so a resumed run repeats."""
    tiny = ["--set", "hidden=[8]", "--set", "latent_dim=2", "-k", "2", "-q"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_cli(capsys, "train", "--data", words, "--out", whole, "--epochs", "3", *tiny)[0] == 0
    assert run_cli(capsys, "train", "--data", words, "--out", parts, "--epochs", "1", *tiny)[0] == 0
    assert run_cli(capsys, "train", "--resume", parts, "--epochs", "3", "-k", "2", "-q")[0] == 0
    a, b = vaekit.load(whole).state_dict(), vaekit.load(parts).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_free_bits_hold_each_dimension_whose_batch_average_is_below_them() -> None:
    """Per latent dimension, on its average over the batch (not per example, not over all
    dimensions at once), in training only."""
    model = tiny_model(free_bits=1.0)
    kl = torch.tensor([[0.1, 3.0], [0.3, 5.0]])  # (examples, latent dims): averages 0.2 and 4
    model.train()
    assert torch.equal(model._free_bits(kl), torch.tensor([[1.0, 3.0], [1.0, 5.0]]))
    kl = torch.tensor([[0.1, 0.5], [2.5, 0.7]])  # averages 1.3 and 0.6: the first stays
    assert torch.equal(model._free_bits(kl), torch.tensor([[0.1, 1.0], [2.5, 1.0]]))
    model.eval()
    assert torch.equal(model._free_bits(kl), kl)


def test_free_bits_with_the_iwae_objective_is_one_line() -> None:
    x = torch.tensor([[4, 5, 1], [5, 1, 0]])  # token ids: "ab<end>", "b<end><pad>"
    with pytest.raises(ConfigError, match=r"free_bits .* objective 'iwae' does not have"):
        vaekit.fit(tiny_model(), x, epochs=1, objective="iwae", samples=2)
    vaekit.fit(tiny_model(free_bits=0.0), x, epochs=1, objective="iwae", samples=2)


def test_refined_posteriors_of_a_text_model_raise_its_elbo(words: Path) -> None:
    """Inference for given strings: q*(z|x) of each raises its ELBO above the encoder's, whose
    ELBO the refinement computes as the model's own (evaluate.elbo, eval mode)."""
    from vaekit.evaluation import inference_gaps

    ds = load_text(words)
    model = vaekit.models.build_model(
        vaekit.models.model_config({**ds.defaults["model"], "hidden": [16], "latent_dim": 3})
    )
    x = ds.train[:12]  # an untrained encoder: much to improve on
    gaps = inference_gaps(model, x, k=10, steps=40, samples=100)
    assert all(v.shape == (12,) for v in gaps.values())
    assert gaps["amortization_gap"].mean() > 0.05 and (gaps["amortization_gap"] > -0.05).all()
    assert float(gaps["elbo"].mean()) == pytest.approx(
        float(elbo_of(model, x, samples=100, seed=1).mean()), abs=0.2
    )


def test_inference_gaps_of_a_text_model_in_training_mode_are_its_evaluation_gaps() -> None:
    """A model left training (word dropout on) gets the gaps of its evaluation-mode decoder, the
    model it is, and is left training; the ELBOs were taken with word dropout before."""
    from vaekit.evaluation import inference_gaps

    torch.manual_seed(0)
    model = TextVAE(vocab=("a", "b"), data_shape=(6,), latent_dim=2, embed_dim=3, hidden=(8,),
                    word_dropout=0.5)  # fmt: skip
    x = model.ids(["ab", "babab", "a", "bb"])
    want = inference_gaps(model.eval(), x, k=5, steps=3)
    got = inference_gaps(model.train(), x, k=5, steps=3)
    assert model.training
    assert all(torch.equal(got[key], want[key]) for key in want)


def test_vaekit_evaluate_of_a_text_model_counts_tokens_not_padded_positions() -> None:
    """vaekit.evaluate on strings reports bits per token of the strings (end token included)
    and reconstructions in strings and tokens, as `vaekit evaluate` does, not the squared error
    of token ids and bits over padded positions."""
    torch.manual_seed(0)
    model = TextVAE(vocab=("a", "b"), data_shape=(6,), latent_dim=2, embed_dim=4, hidden=(8,))
    x = model.ids(["ab", "babab", "a"])  # 3 + 6 + 2 = 11 tokens in 18 positions
    report = vaekit.evaluate(model, x, k=5)
    ll = vaekit.log_likelihood(model, x, k=5)
    assert report["bits_per_dim"] == pytest.approx(float(-ll.sum() / (11 * math.log(2))))
    assert "reconstruction_mse" not in report and 0 <= report["token_accuracy"] <= 1
    assert report == evaluate_text(model, x, k=5)
    assert vaekit.evaluate(model, x.numpy(), k=5) == report  # ids in a numpy array, as elsewhere
