"""Audio decoding/encoding, the audio-to-text form parsing, TTS text splitting and the tiny audio models."""

from __future__ import annotations

import hashlib
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from lpnode.errors import BadRequestError, UnsupportedMediaError
from lpnode.runner.audio import decode_audio, wav_bytes
from lpnode.runner.pipelines.text_to_speech import split_text
from lpnode.schemas.checks import parse_metadata_duration, parse_return_timestamps


def wav_file(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    pcm = (np.repeat(samples, channels) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def sine(seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


# --- decoding ---------------------------------------------------------------------------------


def test_stereo_44k_is_decoded_to_mono_16k_float32() -> None:
    audio = decode_audio(wav_file(sine(1.5, 44100), 44100, channels=2), sampling_rate=16000)
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert audio.seconds == pytest.approx(1.5, abs=0.01)
    assert 0.3 < float(np.abs(audio.samples).max()) <= 1.0


def test_decoding_stops_at_the_length_limit() -> None:
    # The header says 1.5 s (within the 1 s margin), so only the sample count can catch it.
    with pytest.raises(BadRequestError, match="longer than 1 s is not accepted; this audio is longer than that"):
        decode_audio(wav_file(sine(1.5, 16000), 16000), max_seconds=1.0)


def test_a_header_claiming_too_much_audio_is_refused_before_decoding() -> None:
    with pytest.raises(BadRequestError, match=r"this audio is 5\.0 s long"):
        decode_audio(wav_file(sine(5.0, 8000), 8000), max_seconds=2.0)


def test_a_wav_without_samples_is_a_bad_request() -> None:
    with pytest.raises(BadRequestError, match="no samples"):
        decode_audio(wav_file(np.zeros(0, dtype=np.float32), 16000))


@pytest.mark.parametrize("payload", [b"", b"RIFF\x00\x00", b"\x00" * 4096])
def test_undecodable_bytes_are_unsupported_media(payload: bytes) -> None:
    with pytest.raises(UnsupportedMediaError, match=r"^Unsupported audio format or malformed file: .*Send WAV"):
        decode_audio(payload)


def test_a_concat_list_cannot_make_ffmpeg_open_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret.wav").write_bytes(wav_file(sine(1.0, 16000), 16000))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedMediaError):
        decode_audio(b"ffconcat version 1.0\nfile secret.wav\n")


def test_wav_bytes_round_trip_and_clip() -> None:
    samples = np.array([0.0, 0.5, -0.5, 2.0, -2.0], dtype=np.float32)
    with wave.open(io.BytesIO(wav_bytes(samples, 22050))) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 22050)
        pcm = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32767]


# --- audio-to-text form fields ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("Sentence", True), ("false", False), ("0", False), (" word ", "word")],
)
def test_return_timestamps_values(value: str, expected: object) -> None:
    assert parse_return_timestamps(value) == expected


@pytest.mark.parametrize("value", ["", "yes", "chars", "2"])
def test_other_return_timestamps_values_are_refused(value: str) -> None:
    with pytest.raises(BadRequestError, match="return_timestamps must be"):
        parse_return_timestamps(value)


def test_metadata_duration() -> None:
    assert parse_metadata_duration("{}") is None
    assert parse_metadata_duration("") is None
    assert parse_metadata_duration('{"duration": 12}') == 12.0
    assert parse_metadata_duration('{"duration": null, "other": 1}') is None


@pytest.mark.parametrize("metadata", ["{", "[1]", '{"duration": "12"}', '{"duration": true}', '{"duration": -1}'])
def test_bad_metadata_is_refused_in_upstream_words(metadata: str) -> None:
    with pytest.raises(BadRequestError, match=r"^Unable to calculate duration of file: "):
        parse_metadata_duration(metadata)


# --- text-to-speech text splitting --------------------------------------------------------------


def test_short_text_is_one_chunk_with_whitespace_collapsed() -> None:
    assert split_text("  Hello   world.\tHow are you?  ") == ["Hello world. How are you?"]


def test_sentences_are_packed_up_to_the_limit_and_never_cut() -> None:
    sentences = [f"Sentence {i} is here." for i in range(30)]
    chunks = split_text(" ".join(sentences), max_chars=70)
    assert all(len(c) <= 70 for c in chunks)
    assert " ".join(chunks) == " ".join(sentences)
    assert all(c.endswith(".") for c in chunks)


def test_a_long_sentence_is_cut_between_words() -> None:
    text = " ".join(["word"] * 50)
    chunks = split_text(text, max_chars=22)
    assert all(len(c) <= 22 for c in chunks)
    assert all(set(c.split()) == {"word"} for c in chunks)
    assert " ".join(chunks) == text


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_text("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_paragraphs_split_and_blank_text_gives_nothing() -> None:
    assert split_text("One\n\nTwo", max_chars=3) == ["One", "Two"]
    assert split_text(" \n ") == []


# --- tiny audio models --------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("module_name", ["whisper", "vits"])
def test_tiny_audio_models_build_the_same_bytes_every_time(tmp_path: Path, module_name: str) -> None:
    import importlib

    module = importlib.import_module(f"lpnode.runner.tiny.{module_name}")
    save = module.save_audio_to_text if module_name == "whisper" else module.save_text_to_speech
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    save(first)
    save(second)
    assert _digest(first) == _digest(second)
    assert "model.safetensors" in _digest(first)
