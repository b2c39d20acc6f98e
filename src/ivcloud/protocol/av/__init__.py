"""Sans-IO media containers: H.264 and AAC framing, FLV tags, fragmented MP4.

Pure functions and incremental state machines over bytes (no sockets, files, clock or
asyncio), shared by the device SDK (muxing what an encoder produces), the stream hub
(reading FLV tag headers, remuxing once per stream to fMP4 for browsers) and recordings.
Bad input raises :class:`~ivcloud.protocol.errors.MediaFormatError` and nothing else.
"""

from ivcloud.protocol.av.aac import (
    AdtsHeader,
    AudioSpecificConfig,
    add_adts,
    build_asc,
    is_adts,
    parse_adts_header,
    parse_asc,
    split_adts,
    strip_adts,
)
from ivcloud.protocol.av.boxes import Box, find_boxes, iter_boxes
from ivcloud.protocol.av.flv import FlvMuxer, encode_tag, flv_header, rewrite_timestamp
from ivcloud.protocol.av.flv_reader import FlvHeader, FlvReader, FlvTag, FlvTagTooLarge
from ivcloud.protocol.av.fmp4 import (
    AudioTrack,
    Sample,
    TrackRun,
    VideoTrack,
    init_segment,
    media_segment,
)
from ivcloud.protocol.av.fmp4_muxer import Fmp4Muxer
from ivcloud.protocol.av.h264 import (
    AvcDecoderConfig,
    Sps,
    annexb_to_avcc,
    avcc_to_annexb,
    build_avc_decoder_config,
    is_keyframe,
    nal_type,
    parse_avc_decoder_config,
    parse_sps,
    split_annexb,
    split_avcc,
)

__all__ = [
    "AdtsHeader",
    "AudioSpecificConfig",
    "AudioTrack",
    "AvcDecoderConfig",
    "Box",
    "FlvHeader",
    "FlvMuxer",
    "FlvReader",
    "FlvTag",
    "FlvTagTooLarge",
    "Fmp4Muxer",
    "Sample",
    "Sps",
    "TrackRun",
    "VideoTrack",
    "add_adts",
    "annexb_to_avcc",
    "avcc_to_annexb",
    "build_asc",
    "build_avc_decoder_config",
    "encode_tag",
    "find_boxes",
    "flv_header",
    "init_segment",
    "is_adts",
    "is_keyframe",
    "iter_boxes",
    "media_segment",
    "nal_type",
    "parse_adts_header",
    "parse_asc",
    "parse_avc_decoder_config",
    "parse_sps",
    "rewrite_timestamp",
    "split_adts",
    "split_annexb",
    "split_avcc",
    "strip_adts",
]
