"""Golden values: exact outputs pinned under fixed seeds, so a refactor that changes behaviour fails here.

As LLMs-from-scratch does in its tests: token ids from decoding at temperature
0 and greedy decoding (no sampling involved), a slice of the logits behind
them, and the step losses and learning rates of a short training run. If a
deliberate change of behaviour moves them, regenerate the values with the code
in each test and say why in the commit message.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils.data import TensorDataset

from bigmodel_lib import TrainConfig, Trainer
from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.models.transformer import Seq2SeqConfig, Seq2SeqTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gpt_generate_at_temperature_zero_gives_pinned_token_ids():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=23, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    prompt = torch.tensor([[1, 5, 7, 19, 3]])
    out = model.generate(prompt, max_new_tokens=12, temperature=0)
    assert out[0].tolist() == GPT_IDS
    logits, _ = model(prompt)
    assert_close(logits[0, :, :4], torch.tensor(GPT_LOGITS), rtol=1e-4, atol=1e-6)


def test_seq2seq_greedy_decoding_gives_pinned_token_ids():
    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=14, d_model=32, num_heads=4,
                                             num_encoder_layers=1, num_decoder_layers=2, d_ff=64, max_len=10))
    src = torch.tensor([[3, 4, 5, 6, 2], [7, 8, 9, 2, 0]])
    assert model.greedy_decode(src).tolist() == SEQ2SEQ_IDS
    assert model.beam_search(src, beam_size=3, length_penalty=1.0).tolist() == SEQ2SEQ_BEAM_IDS
    logits, _ = model.eval()(src, torch.tensor([[1, 3, 4], [1, 5, 6]]))
    assert_close(logits[:, :, :4], torch.tensor(SEQ2SEQ_LOGITS), rtol=1e-4, atol=1e-6)


def test_a_short_trainer_run_gives_pinned_step_losses():
    torch.manual_seed(0)
    x, y = torch.randn(96, 10), torch.randint(0, 4, (96,))
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 4))
    config = TrainConfig(epochs=2, batch_size=32, lr=1e-2, device="cpu", progress=False, precision="fp32")
    history = Trainer(model, config).fit(TensorDataset(x, y))
    assert history.step_loss == pytest.approx(STEP_LOSSES, rel=1e-5)
    assert history.step_lr == pytest.approx(STEP_LRS, rel=1e-12)


# Generated with the code above (torch 2.14.1, CPU, one thread).
GPT_IDS: list[int] = [1, 5, 7, 19, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]
GPT_LOGITS = [
    [-0.341012, 0.38357, -0.12135, -0.096742],
    [-0.212236, 0.086501, 0.023155, 0.040595],
    [-0.173767, 0.085809, 0.067668, -0.172596],
    [-0.200698, -0.042088, 0.003991, -0.161065],
    [0.048331, 0.062612, 0.122258, 0.380779]]
SEQ2SEQ_IDS = [[1, 13, 13, 13, 13, 12, 4, 9, 8, 9], [1, 8, 8, 8, 8, 8, 8, 8, 8, 9]]
SEQ2SEQ_BEAM_IDS = [[1, 13, 0, 9, 8, 8, 8, 8, 9, 9], [1, 8, 10, 10, 10, 8, 8, 8, 8, 8]]
SEQ2SEQ_LOGITS = [[[-0.434855, 0.125384, 0.742821, 0.604303], [0.424431, 0.174786, 0.45495, 0.691867], [0.168685, 0.04559, -0.28145, 0.207599]], [[-0.565279, 0.054336, 0.799797, 0.579351], [0.472472, 0.784842, -0.289826, -0.294278], [0.23415, 0.671851, 0.13683, -0.052485]]]
STEP_LOSSES = [1.3830796, 1.3658171, 1.2967231, 1.3333352, 1.2664285, 1.2097822]
STEP_LRS = [0.01, 0.009397114317029975, 0.007750000000000001, 0.0055000000000000005, 0.003250000000000001, 0.0016028856829700259]
