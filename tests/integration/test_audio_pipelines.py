"""audio-to-text and text-to-speech over HTTP on real runners with the tiny models.

The tiny Whisper is wired to hear " hello world" in any audio, so transcripts can be asserted exactly;
the tiny VITS speaks seeded noise, so speech is checked by its WAV structure and length.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import requests
from PIL import Image

from lpnode.runner.tiny._layout import write_snapshot
from procs import RunnerProcess

A2T = "lpnode/tiny-audio-to-text"
TTS = "lpnode/tiny-text-to-speech"
PARLER = "parler-tts/parler-tts-mini-v1"
UNSUPPORTED = "Unsupported audio format or malformed file"

# (container, codec, upload file name) for the compressed formats an uploader is likely to send.
COMPRESSED = [
    ("mp3", "libmp3lame", "tone.mp3"),
    ("flac", "flac", "tone.flac"),
    ("ogg", "libopus", "tone.ogg"),
    ("ipod", "aac", "tone.m4a"),
    ("webm", "libopus", "tone.webm"),
]


def tone(seconds: float, rate: int) -> np.ndarray:
    """A 440 Hz tone: one second computed, then repeated (whole periods, so seamless)."""
    second = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    return np.tile(second, int(np.ceil(seconds)))[: int(seconds * rate)]


def wav_file(seconds: float, rate: int = 16000, sample_width: int = 2) -> bytes:
    samples = tone(seconds, rate)
    pcm = (samples * 127 + 128).astype(np.uint8) if sample_width == 1 else (samples * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(sample_width)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def encoded_file(container: str, codec: str, seconds: float = 2.0) -> bytes:
    """A stereo 440 Hz tone encoded with PyAV (the encoder resamples to the codec's format)."""
    rate = 48000 if "opus" in codec else 44100
    samples = tone(seconds, rate)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        for start in range(0, len(samples), 1024):
            part = samples[start : start + 1024]
            frame = av.AudioFrame.from_ndarray(np.stack([part, part]), format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def png_file() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav_of(response_json: dict[str, object]) -> tuple[bytes, wave.Wave_read]:
    url = response_json["audio"]["url"]  # type: ignore[index]
    assert url.startswith("data:audio/wav;base64,")
    data = base64.b64decode(url.split(",", 1)[1])
    return data, wave.open(io.BytesIO(data))


def seconds_of(response_json: dict[str, object]) -> float:
    _, audio = wav_of(response_json)
    return audio.getnframes() / audio.getframerate()


@pytest.fixture(scope="module")
def parler_config_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir holding just the config.json of a Parler-TTS model (parler_tts is not installed here)."""
    models = tmp_path_factory.mktemp("parler-models")
    config = {"model_type": "parler_tts", "architectures": ["ParlerTTSForConditionalGeneration"]}
    write_snapshot(models, PARLER, lambda folder: (folder / "config.json").write_text(json.dumps(config)))
    return models


@pytest.fixture(scope="module")
def runners(start_runner, parler_config_only: Path) -> dict[str, RunnerProcess]:  # type: ignore[no-untyped-def]
    """The two serving runners load together; the two that must fail to load start once those are up
    and fail while the other tests run."""
    procs = {"a2t": start_runner("audio-to-text", A2T), "tts": start_runner("text-to-speech", TTS)}
    for name in ("a2t", "tts"):
        assert procs[name].wait_status({"IDLE", "ERROR"})[-1] == "IDLE", procs[name].log()
    procs["tts_with_whisper"] = start_runner("text-to-speech", A2T)
    procs["parler_without_package"] = start_runner("text-to-speech", PARLER, models=parler_config_only)
    return procs


@pytest.fixture(scope="module")
def a2t(runners: dict[str, RunnerProcess]) -> RunnerProcess:
    return runners["a2t"]


@pytest.fixture(scope="module")
def tts(runners: dict[str, RunnerProcess]) -> RunnerProcess:
    return runners["tts"]


def transcribe(runner: RunnerProcess, data: bytes, name: str = "in.wav", **fields: str) -> requests.Response:
    return runner.post("/audio-to-text", data=fields, files={"audio": (name, data, "application/octet-stream")})


# --- audio-to-text -----------------------------------------------------------------------------


def test_wav_is_transcribed_with_a_sentence_timestamp_and_its_duration(a2t: RunnerProcess) -> None:
    r = transcribe(a2t, wav_file(2.0))
    assert r.status_code == 200, r.text[:500]
    assert r.json() == {"text": " hello world", "chunks": [{"timestamp": [0.0, 1.0], "text": " hello world"}]}
    assert r.headers["X-Audio-Duration"] == "2.000"


@pytest.mark.parametrize(("container", "codec", "name"), COMPRESSED, ids=[c[2] for c in COMPRESSED])
def test_compressed_formats_are_decoded(a2t: RunnerProcess, container: str, codec: str, name: str) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    r = transcribe(a2t, encoded_file(container, codec), name=name)
    assert r.status_code == 200, r.text[:500]
    assert r.json()["text"] == " hello world"
    assert float(r.headers["X-Audio-Duration"]) == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("value", ["false", "0", "FALSE"])
def test_timestamps_off_gives_no_chunks(a2t: RunnerProcess, value: str) -> None:
    r = transcribe(a2t, wav_file(1.0), return_timestamps=value)
    assert r.status_code == 200, r.text[:500]
    assert r.json() == {"text": " hello world", "chunks": []}


@pytest.mark.parametrize("value", ["true", "1", "sentence"])
def test_sentence_timestamps_spellings(a2t: RunnerProcess, value: str) -> None:
    r = transcribe(a2t, wav_file(1.0), return_timestamps=value)
    assert r.json()["chunks"] == [{"timestamp": [0.0, 1.0], "text": " hello world"}]


def test_word_timestamps_give_one_chunk_per_word(a2t: RunnerProcess) -> None:
    r = transcribe(a2t, wav_file(1.0), return_timestamps="word")
    assert r.status_code == 200, r.text[:500]
    chunks = r.json()["chunks"]
    assert [c["text"] for c in chunks] == [" hello", " world"]
    assert all(len(c["timestamp"]) == 2 for c in chunks)


@pytest.mark.parametrize("mode", ["true", "false", "word"])
def test_audio_longer_than_one_window_is_transcribed_in_chunks(a2t: RunnerProcess, mode: str) -> None:
    r = transcribe(a2t, wav_file(35.0), return_timestamps=mode)
    assert r.status_code == 200, r.text[:500]
    assert r.json()["text"] == " hello world"
    assert r.headers["X-Audio-Duration"] == "35.000"
    for chunk in r.json()["chunks"]:
        assert len(chunk["timestamp"]) == 2 and chunk["text"].strip()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"this is not audio at all" * 20, "FFmpeg could not read it"),
        (png_file(), "no audio track"),
        (b"", "empty"),
        (b"ffconcat version 1.0\nfile /etc/hostname\n", "FFmpeg could not read it"),
    ],
    ids=["garbage", "png", "empty", "concat-list"],
)
def test_uploads_that_are_not_audio_get_415(a2t: RunnerProcess, payload: bytes, reason: str) -> None:
    r = transcribe(a2t, payload)
    assert r.status_code == 415, r.text[:500]
    message = r.json()["detail"]["msg"]
    assert message.startswith(UNSUPPORTED) and reason in message
    assert "Traceback" not in message


def test_bad_return_timestamps_gets_400(a2t: RunnerProcess) -> None:
    r = transcribe(a2t, wav_file(1.0), return_timestamps="chapter")
    assert r.status_code == 400
    expected = "return_timestamps must be 'true' (or 'sentence'), 'word' or 'false', got 'chapter'."
    assert r.json()["detail"]["msg"] == expected


@pytest.mark.parametrize(("metadata", "part"), [("not json", "JSON object"), ('{"duration": "long"}', "number")])
def test_bad_metadata_gets_400(a2t: RunnerProcess, metadata: str, part: str) -> None:
    r = transcribe(a2t, wav_file(1.0), metadata=metadata)
    assert r.status_code == 400
    message = r.json()["detail"]["msg"]
    assert message.startswith("Unable to calculate duration of file") and part in message


def test_metadata_duration_is_accepted(a2t: RunnerProcess) -> None:
    r = transcribe(a2t, wav_file(1.0), metadata='{"duration": 1.0, "job": "x"}')
    assert r.status_code == 200, r.text[:500]


def test_audio_over_an_hour_gets_400_naming_the_limit(a2t: RunnerProcess) -> None:
    by_metadata = transcribe(a2t, wav_file(1.0), metadata='{"duration": 5000}')
    assert by_metadata.status_code == 400
    assert "3600 s" in by_metadata.json()["detail"]["msg"]
    # 3700 s of 8 kHz 8-bit audio is 29.6 MB: under the upload limit, over the length limit.
    by_length = transcribe(a2t, wav_file(3700.0, rate=8000, sample_width=1))
    assert by_length.status_code == 400, by_length.text[:500]
    assert "3600 s" in by_length.json()["detail"]["msg"] and "3700.0 s" in by_length.json()["detail"]["msg"]


def test_upload_over_50_mib_gets_413(a2t: RunnerProcess) -> None:
    r = transcribe(a2t, b"\0" * (50 * 1024 * 1024 + 10))
    assert r.status_code == 413
    assert r.json()["detail"]["msg"] == "File size exceeds limit."


def test_other_model_id_gets_400(a2t: RunnerProcess) -> None:
    r = transcribe(a2t, wav_file(1.0), model_id="openai/whisper-large-v3")
    assert r.status_code == 400
    assert r.json()["detail"]["msg"] == f"pipeline configured with {A2T} but called with openai/whisper-large-v3."


def test_missing_audio_gets_422_naming_the_field(a2t: RunnerProcess) -> None:
    r = a2t.post("/audio-to-text", data={"return_timestamps": "true"})
    assert r.status_code == 422
    assert ["body", "audio"] in [item["loc"] for item in r.json()["detail"]]


# --- text-to-speech ----------------------------------------------------------------------------


def test_speech_is_a_mono_16_bit_wav_and_repeatable(tts: RunnerProcess) -> None:
    r = tts.post("/text-to-speech", json={"text": "Hello world."})
    assert r.status_code == 200, r.text[:500]
    data, audio = wav_of(r.json())
    assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 16000)
    assert 0.1 < audio.getnframes() / audio.getframerate() < 10
    again = tts.post("/text-to-speech", json={"text": "Hello world.", "description": "A calm female voice."})
    assert wav_of(again.json())[0] == data  # fixed seed; VITS ignores the description


def test_longer_text_gives_longer_speech(tts: RunnerProcess) -> None:
    short = tts.post("/text-to-speech", json={"text": "Hello world."}).json()
    sentence = "The quick brown fox jumps over the lazy dog, then rests for a while in the shade. "
    medium = tts.post("/text-to-speech", json={"text": sentence * 3}).json()
    long_text = (sentence * 40)[:3000]
    r = tts.post("/text-to-speech", json={"text": long_text})
    assert r.status_code == 200, r.text[:500]
    assert seconds_of(short) < seconds_of(medium) < seconds_of(r.json())


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_text_gets_400(tts: RunnerProcess, text: str) -> None:
    r = tts.post("/text-to-speech", json={"text": text})
    assert r.status_code == 400
    assert r.json()["detail"]["msg"] == "Text input must be provided."


def test_text_the_model_cannot_speak_gets_400(tts: RunnerProcess) -> None:
    r = tts.post("/text-to-speech", json={"text": "日本語 ☃ €"})
    assert r.status_code == 400
    assert "no characters this model can speak" in r.json()["detail"]["msg"]


def test_text_over_the_limit_gets_400(tts: RunnerProcess) -> None:
    r = tts.post("/text-to-speech", json={"text": "a " * 6000})
    assert r.status_code == 400
    assert "the limit is 10000" in r.json()["detail"]["msg"]


def test_tts_other_model_id_gets_400(tts: RunnerProcess) -> None:
    r = tts.post("/text-to-speech", json={"text": "hi", "model_id": "facebook/mms-tts-eng"})
    assert r.status_code == 400
    # Upstream's wording on this route has no final period.
    assert r.json()["detail"]["msg"] == f"pipeline configured with {TTS} but called with facebook/mms-tts-eng"


def test_a_model_that_is_not_a_tts_model_fails_to_load_with_the_reason(runners: dict[str, RunnerProcess]) -> None:
    runner = runners["tts_with_whisper"]
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    r = runner.post("/text-to-speech", json={"text": "hi"})
    assert r.status_code == 503
    message = r.json()["detail"]["msg"]
    assert "'whisper'" in message and "facebook/mms-tts-eng" in message


def test_a_parler_model_without_parler_tts_fails_to_load_naming_the_package(
    runners: dict[str, RunnerProcess],
) -> None:
    runner = runners["parler_without_package"]
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    message = runner.post("/text-to-speech", json={"text": "hi"}).json()["detail"]["msg"]
    assert "parler_tts package" in message and "facebook/mms-tts-eng" in message


# --- after all of the above ----------------------------------------------------------------------


def test_runners_keep_serving_after_bad_input(a2t: RunnerProcess, tts: RunnerProcess) -> None:
    assert a2t.health() == "IDLE" and tts.health() == "IDLE"
    assert transcribe(a2t, wav_file(1.0)).json()["text"] == " hello world"
    assert tts.post("/text-to-speech", json={"text": "still here"}).status_code == 200
    assert "Traceback" not in a2t.log() and "Traceback" not in tts.log()
