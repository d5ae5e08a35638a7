"""The inspection tools on the real SmolLM2-135M (slow: dequantising the GGUF takes a while).

These check claims that need pretrained knowledge: the lens ends at the real logits and
finds the answer, embedding directions are real (G9), induction heads exist, and attention
reaches further back in deep layers than in shallow ones (G4).
"""

import pytest
import torch

from glassgpt.inspect import embed
from glassgpt.inspect.heads import head_scores
from glassgpt.inspect.lens import lens_logits, logit_lens

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def smol():
    from glassgpt.load import load_model

    return load_model(None)


def test_lens_last_layer_is_the_real_output_and_finds_rome(smol):
    ids = smol.tokenizer.encode("The capital of France is Paris. The capital of Italy is")
    names, lens, logits = lens_logits(smol.model, ids)
    assert len(names) == 31
    with torch.no_grad():
        torch.testing.assert_close(lens[-1], smol.model(torch.tensor([ids]))[0], rtol=1e-4, atol=1e-4)
    top = logit_lens(smol.model, ids, k=1).top_ids[-1, -1, 0]
    assert smol.tokenizer.decode([int(top)]) == " Rome"


def test_g9_analogy_and_directions(smol):
    m, tok = smol.model, smol.tokenizer
    assert " queen" in [w for w, _ in embed.analogy(m, tok, "king", "man", "woman", k=3)]
    plural = embed.pair_alignment(m, tok, [("cat", "cats"), ("dog", "dogs"), ("house", "houses"), ("car", "cars"),
                                           ("tree", "trees"), ("book", "books"), ("bird", "birds")])
    assert plural["mean_cosine"] > plural["baseline_mean"] + 3 * plural["baseline_std"]
    d = embed.direction(m, tok, [("man", "woman"), ("king", "queen"), ("boy", "girl")])
    proj = dict(embed.project(m, tok, ["actor", "actress", "prince", "princess", "uncle", "aunt"], d))
    assert proj["actress"] > proj["actor"] and proj["princess"] > proj["prince"] and proj["aunt"] > proj["uncle"]


def test_induction_heads_and_g4_distance(smol):
    text = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
            "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.")
    s = head_scores(smol.model, smol.tokenizer.encode(text), bos=smol.tokenizer.bos_id)
    assert s.induction.max() > 0.5  # some head continues a repeated random sequence
    assert s.induction[:3].max() < 0.2  # … but none in the first layers (induction needs two layers)
    d = s.distance.mean(-1)
    assert d[:10].mean() < d[-10:].mean()  # G4: deep layers look further back than shallow ones
