"""AAC framing: AudioSpecificConfig and ADTS.

Devices and encoders often emit ADTS (each frame carries a 7/9-byte header repeating the
stream parameters); FLV and MP4 want raw frames plus one AudioSpecificConfig ("ASC") sent
once. Converting between the two is the whole job: the AAC payload is never decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivcloud.protocol.av.bits import BitReader, BytesLike
from ivcloud.protocol.errors import MediaFormatError

SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
EXPLICIT_FREQUENCY = 15  # index meaning "a 24-bit frequency follows"
AAC_LC = 2
SAMPLES_PER_FRAME = 1024  # AAC-LC (and HE-AAC at its core rate)
ADTS_MAX_FRAME = (1 << 13) - 1


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    """The leading ASC fields (ISO/IEC 14496-3 1.6.2.1).

    What follows them (GASpecificConfig, explicit SBR/PS signalling) is not interpreted: the
    containers carry the ASC bytes unchanged, so they need only rate, channels and type.
    """

    object_type: int
    sample_rate: int
    channel_config: int
    frequency_index: int  # 15 when the rate is given explicitly

    @property
    def codec_string(self) -> str:
        """RFC 6381 ``mp4a.40.<object type>`` for MSE (``mp4a.40.2`` for AAC-LC)."""
        return f"mp4a.40.{self.object_type}"


def build_asc(object_type: int = AAC_LC, sample_rate: int = 44100, channels: int = 2) -> bytes:
    """Build a minimal ASC; rates outside the index table use the explicit 24-bit form."""
    if not 1 <= object_type <= 95 or object_type == 31 or not 0 <= channels <= 15:
        raise MediaFormatError("object type or channel configuration not representable")
    if not 0 < sample_rate < (1 << 24):
        raise MediaFormatError(f"sample rate {sample_rate} not representable")
    bits, width = _object_type_bits(object_type)
    if sample_rate in SAMPLE_RATES:
        bits, width = (bits << 4) | SAMPLE_RATES.index(sample_rate), width + 4
    else:
        bits, width = (bits << 28) | (EXPLICIT_FREQUENCY << 24) | sample_rate, width + 28
    bits, width = (bits << 4) | channels, width + 4
    # GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag all zero.
    bits, width = bits << 3, width + 3
    pad = -width % 8
    return (bits << pad).to_bytes((width + pad) // 8, "big")


def _object_type_bits(object_type: int) -> tuple[int, int]:
    if object_type < 31:
        return object_type, 5
    return (31 << 6) | (object_type - 32), 11


def parse_asc(data: BytesLike) -> AudioSpecificConfig:
    r = BitReader(bytes(data))
    object_type = r.u(5)
    if object_type == 31:
        object_type = 32 + r.u(6)
    if object_type == 0:
        raise MediaFormatError("ASC object type 0 (null)")
    index = r.u(4)
    if index == EXPLICIT_FREQUENCY:
        rate = r.u(24)
        if rate == 0:
            raise MediaFormatError("ASC explicit sample rate 0")
    elif index < len(SAMPLE_RATES):
        rate = SAMPLE_RATES[index]
    else:
        raise MediaFormatError(f"ASC reserved sampling frequency index {index}")
    return AudioSpecificConfig(object_type, rate, r.u(4), index)


# ------------------------------------------------------------------------ ADTS


@dataclass(frozen=True, slots=True)
class AdtsHeader:
    object_type: int  # profile + 1
    frequency_index: int
    channel_config: int
    frame_length: int  # header included
    has_crc: bool
    raw_blocks: int  # number_of_raw_data_blocks_in_frame + 1

    @property
    def header_size(self) -> int:
        return 9 if self.has_crc else 7

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATES[self.frequency_index]

    def asc(self) -> bytes:
        return build_asc(self.object_type, self.sample_rate, self.channel_config)


def is_adts(data: BytesLike) -> bool:
    """Whether the bytes start with the ADTS syncword (and layer 0)."""
    return len(data) >= 2 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0


def parse_adts_header(data: BytesLike, offset: int = 0) -> AdtsHeader:
    head = bytes(data[offset : offset + 9])
    if len(head) < 7:
        raise MediaFormatError("truncated ADTS header")
    if not is_adts(head):
        raise MediaFormatError("no ADTS syncword")
    has_crc = not head[1] & 0x01
    index = (head[2] >> 2) & 0x0F
    if index >= len(SAMPLE_RATES):
        raise MediaFormatError(f"ADTS reserved sampling frequency index {index}")
    header = AdtsHeader(
        object_type=(head[2] >> 6) + 1,
        frequency_index=index,
        channel_config=((head[2] & 0x01) << 2) | (head[3] >> 6),
        frame_length=((head[3] & 0x03) << 11) | (head[4] << 3) | (head[5] >> 5),
        has_crc=has_crc,
        raw_blocks=(head[6] & 0x03) + 1,
    )
    if header.frame_length < header.header_size:
        raise MediaFormatError("ADTS frame length shorter than its header")
    return header


def strip_adts(frame: BytesLike) -> tuple[bytes, bytes]:
    """One ADTS frame → (raw AAC frame, ASC). The CRC, if present, is dropped unchecked.

    Frames with several raw data blocks are refused: FLV and MP4 need one block per sample
    and splitting them needs the block positions only the CRC variant carries; encoders
    practically never produce them.
    """
    header = parse_adts_header(frame)
    if header.raw_blocks != 1:
        raise MediaFormatError("ADTS frames with several raw data blocks are not supported")
    if header.frame_length > len(frame):
        raise MediaFormatError("ADTS frame truncated")
    return bytes(frame[header.header_size : header.frame_length]), header.asc()


def split_adts(data: BytesLike) -> list[tuple[bytes, bytes]]:
    """A run of ADTS frames (as a device pushes them) → [(raw frame, ASC), ...]."""
    frames: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        length = parse_adts_header(data, pos).frame_length
        frames.append(strip_adts(data[pos : pos + length]))
        pos += length
    return frames


def add_adts(raw: BytesLike, asc: BytesLike | AudioSpecificConfig) -> bytes:
    """Wrap a raw frame in a 7-byte ADTS header (no CRC), e.g. for ``.aac`` downloads or
    decoders that only take ADTS."""
    config = asc if isinstance(asc, AudioSpecificConfig) else parse_asc(asc)
    if not 1 <= config.object_type <= 4 or config.sample_rate not in SAMPLE_RATES:
        raise MediaFormatError("ADTS can carry object types 1-4 at table sample rates only")
    if config.channel_config > 7:
        raise MediaFormatError("ADTS channel configuration must be 0-7")
    length = len(raw) + 7
    if length > ADTS_MAX_FRAME:
        raise MediaFormatError("raw AAC frame too long for ADTS")
    header = (
        (0xFFF << 44)
        | (1 << 40)  # MPEG-4, layer 0, protection absent
        | ((config.object_type - 1) << 38)
        | (SAMPLE_RATES.index(config.sample_rate) << 34)
        | (config.channel_config << 30)
        | (length << 13)
        | (0x7FF << 2)  # buffer fullness: VBR
    )
    return header.to_bytes(7, "big") + bytes(raw)
