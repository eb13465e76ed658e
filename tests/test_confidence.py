"""Each generated token's confidence (what `--fill smooth-prior` spends): the probability its code had at the step
that fixed it; 1 for the known tokens."""

import torch

from maskgit_cli.decoding.decode import DecodeSettings, decode_tokens


def test_confidence_is_the_drawn_codes_probability_when_fixed():
    V, L, mask_id = 4, 9, 4
    logits = torch.randn(2, L, V + 1, generator=torch.Generator().manual_seed(0))

    def model(ids):  # the same logits at every step: a token's probability does not depend on when it is fixed
        return logits.clone()

    tokens = torch.zeros(2, L, dtype=torch.int64)
    unknown = torch.zeros(2, L, dtype=torch.bool)
    unknown[0, :5], unknown[1, 3:] = True, True
    for settings in (DecodeSettings(total_iter=3, sampling="argmax", temperature=1.0), DecodeSettings(total_iter=3)):
        result = decode_tokens(model, tokens, unknown, settings, mask_id)
        probs = (logits[..., :V] / settings.temperature).softmax(-1)
        want = probs.gather(-1, result.tokens.unsqueeze(-1)).squeeze(-1)
        assert torch.equal(result.confidence[~unknown], torch.ones(int((~unknown).sum())))
        torch.testing.assert_close(result.confidence[unknown], want[unknown])
    argmax = decode_tokens(model, tokens, unknown, DecodeSettings(total_iter=3, sampling="argmax"), mask_id)
    assert (argmax.confidence[unknown] > 1 / V).all()  # the most likely of V codes
