"""A simulated device's camera and microphone: live H.264 (constrained baseline, Annex B,
SPS/PPS with every IDR) with the capture time burnt into each picture, AAC-LC and Opus
audio with a beep on every wall-clock second, paced in real time by :class:`LiveSource`.

A device SDK user with real hardware can use the encoders on their own frames
(:class:`H264Encoder`) and the pacer's shape as a model."""

from ivcloud.device.av.audio import (
    AudioCodec,
    AudioEncoder,
    AudioProfile,
    EncodedAudio,
    ToneGenerator,
    audio_specific_config,
)
from ivcloud.device.av.source import DEFAULT_AUDIO, DEFAULT_VIDEO, LiveSource, MediaFrame
from ivcloud.device.av.video import (
    QUALITIES,
    EncodedVideo,
    H264Encoder,
    Quality,
    TestPattern,
    VideoEncoder,
    VideoProfile,
)

__all__ = [
    "DEFAULT_AUDIO",
    "DEFAULT_VIDEO",
    "QUALITIES",
    "AudioCodec",
    "AudioEncoder",
    "AudioProfile",
    "EncodedAudio",
    "EncodedVideo",
    "H264Encoder",
    "LiveSource",
    "MediaFrame",
    "Quality",
    "TestPattern",
    "ToneGenerator",
    "VideoEncoder",
    "VideoProfile",
    "audio_specific_config",
]
